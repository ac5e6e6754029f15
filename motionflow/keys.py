"""Canonical JSON, content digests and the versioned cache keys built from them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import blake3

__all__ = [
    "KEY_VERSION",
    "canonical_json",
    "digest_bytes",
    "digest_file",
    "digest_text",
    "instance_key",
]

#: Bump when the shape of keys changes; every cached result becomes a miss (and costs money).
KEY_VERSION = 1

_CHUNK = 1 << 20


def canonical_json(value: Any) -> str:
    """Return the canonical JSON text of ``value``: sorted keys, no spaces, ASCII escapes, no NaN.

    Raises:
        ValueError: NaN or infinity (they have no canonical form).
        TypeError: a value that is not plain JSON (a path, an object).
    """
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )


def digest_bytes(data: bytes) -> str:
    """Return the ``blake3:<hex>`` digest of ``data``."""
    return "blake3:" + blake3.blake3(data).hexdigest()


def digest_text(text: str) -> str:
    """Return the ``blake3:<hex>`` digest of ``text`` encoded as UTF-8."""
    return digest_bytes(text.encode("utf-8"))


def digest_file(path: Path) -> str:
    """Return the ``blake3:<hex>`` digest of a file's bytes, read in 1 MiB chunks."""
    hasher = blake3.blake3()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            hasher.update(chunk)
    return "blake3:" + hasher.hexdigest()


def instance_key(components: Mapping[str, Any]) -> str:
    """Return the cache key of a stage instance from its key components.

    ``components`` holds everything that determines the output: the stage kind and its version,
    the parameters after templating with every artifact replaced by its digest, the take index,
    and the versions that change the bytes. Never paths, timestamps, variant names or secrets.
    """
    payload = {"key_version": KEY_VERSION, **components}
    return blake3.blake3(canonical_json(payload).encode("utf-8")).hexdigest()
