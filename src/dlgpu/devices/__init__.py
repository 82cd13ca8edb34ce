"""What is present on this machine: devices, their memory, and the precisions each can run."""

from .detect import detect, select
from .precision import unsupported_reason

__all__ = ["detect", "select", "unsupported_reason"]
