"""Static analysis of workloads on the meta device: what they need before anything runs."""

from .memory_model import MemoryFloor, activation_bytes, kv_cache_bytes, memory_floor

__all__ = ["MemoryFloor", "activation_bytes", "kv_cache_bytes", "memory_floor"]
