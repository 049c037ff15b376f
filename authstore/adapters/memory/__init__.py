"""The in-process backend: all four stores, exact under threads and asyncio."""

from authstore.adapters.memory.backend import MemoryBackend

backend = MemoryBackend()

__all__ = ["MemoryBackend", "backend"]
