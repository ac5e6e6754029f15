"""The shared cache: result index, content-addressed blobs, per-key locks (``cache.locks``)."""

from motionflow.cache.store import Cache, default_cache_dir

__all__ = ["Cache", "default_cache_dir"]
