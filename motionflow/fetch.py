"""Fetching remote recipe inputs over http(s) once into the cache, with a size limit and pin."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from motionflow.cache.store import Cache
from motionflow.errors import InputError
from motionflow.recipe.schema import RemoteInput
from motionflow.stages.base import FileArtifact

if TYPE_CHECKING:
    import httpx

__all__ = ["fetch_input"]

_TIMEOUT = 60.0


async def fetch_input(
    name: str, spec: RemoteInput, cache: Cache, *, client: httpx.AsyncClient | None = None
) -> FileArtifact:
    """Download ``spec.url`` into the blob store and return it as an artifact.

    Only http and https are fetched (the recipe schema refuses other schemes, and redirects
    to other schemes are not followed). The download is refused past ``spec.max_mb`` and,
    when pinned, kept only if its sha256 matches.

    Raises:
        InputError: network failure, HTTP error, too large, or not what the pin says.
    """
    import httpx

    limit = int(spec.max_mb * 1024 * 1024)
    own = client is None
    http = client or httpx.AsyncClient(follow_redirects=True, timeout=_TIMEOUT)
    sha = hashlib.sha256()
    size = 0
    try:
        with cache.temp_file() as tmp:
            try:
                async with http.stream("GET", spec.url) as response:
                    if response.status_code >= 400:
                        msg = (
                            f"input {name!r}: {spec.url} answered HTTP {response.status_code}; "
                            "check the URL (is it public?)"
                        )
                        raise InputError(msg)
                    declared = int(response.headers.get("content-length") or 0)
                    if declared > limit:
                        msg = (
                            f"input {name!r}: {spec.url} is {declared / 1e6:.1f} MB, over the "
                            f"{spec.max_mb:g} MB limit; raise max_mb for this input if you "
                            "trust it"
                        )
                        raise InputError(msg)
                    with tmp.open("wb") as out:
                        async for chunk in response.aiter_bytes():
                            size += len(chunk)
                            if size > limit:
                                msg = (
                                    f"input {name!r}: {spec.url} sent more than the "
                                    f"{spec.max_mb:g} MB limit; raise max_mb if you trust it"
                                )
                                raise InputError(msg)
                            sha.update(chunk)
                            out.write(chunk)
            except httpx.HTTPError as exc:
                msg = (
                    f"input {name!r}: cannot download {spec.url}: {type(exc).__name__}: {exc}; "
                    "check the URL and your network, or use a local file"
                )
                raise InputError(msg) from exc
            actual = sha.hexdigest()
            if spec.sha256 and actual != spec.sha256.lower():
                msg = (
                    f"input {name!r}: {spec.url} has sha256 {actual}, but the recipe pins "
                    f"{spec.sha256.lower()}; the file changed or the pin is wrong. Nothing was "
                    "stored; update sha256 if the new file is the right one"
                )
                raise InputError(msg)
            digest, _ = cache.store_file(tmp, move=True)
    finally:
        if own:
            await http.aclose()
    cache.set("url:" + spec.url, digest)
    cache.set("origin:" + digest, spec.url)  # the url publisher passes it on
    cache.set("pin:sha256:" + actual, digest)
    ext = Path(spec.url.split("?")[0]).suffix.lower()
    return FileArtifact(digest, cache.blob_path(digest), ext)
