"""Static analysis of workloads on the meta device: what they need before anything runs."""

from .memory_model import MemoryFloor, memory_floor

__all__ = ["MemoryFloor", "memory_floor"]
