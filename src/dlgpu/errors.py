"""The exception tree. ``BadInput`` is what the CLI turns into one line and exit code 2."""

from __future__ import annotations


class DlgpuError(Exception):
    """Base of every error dlgpu raises on purpose."""


class BadInput(DlgpuError):
    """The user asked for something that does not exist or is not valid.

    The message names what was wrong and what is valid, in one line."""


class WorkloadError(DlgpuError):
    """A workload could not be built or run."""


class DeviceUnavailable(DlgpuError):
    """A requested device is not present on this machine."""
