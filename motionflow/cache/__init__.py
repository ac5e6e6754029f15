"""The shared cache: result index, content-addressed blobs, per-key locks."""

from motionflow.cache.locks import key_lock
from motionflow.cache.store import Cache, default_cache_dir

__all__ = ["Cache", "default_cache_dir", "key_lock"]
