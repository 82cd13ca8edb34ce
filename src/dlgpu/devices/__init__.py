"""What is present on this machine: devices, their memory, and the precisions each can run."""

from .detect import available_memory, detect, select, use_threads
from .precision import unsupported_reason

__all__ = ["available_memory", "detect", "select", "unsupported_reason", "use_threads"]
