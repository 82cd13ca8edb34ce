"""Persistence of results. For now: one JSON document per run, written atomically."""

from .jsonfile import default_runs_dir, write_json_atomic

__all__ = ["default_runs_dir", "write_json_atomic"]
