"""What every publisher does: turn a local file into a URL the service can fetch, once per digest.

The EmpirioLabs API fetches ``reference_image`` and ``reference_video`` itself, so local media
must be reachable at a URL first. A publisher makes that URL; :class:`PublishedUrls` remembers
it by the file's content digest (in the cache's key-value table), so the same bytes are
published once, whichever run, stage or variant needs them again. A URL that expires (a
presigned S3 URL) is reused only while it still has :data:`MIN_VALIDITY` seconds to live.
"""

from __future__ import annotations

import asyncio
import mimetypes
import time
from dataclasses import dataclass
from typing import Any, Protocol

from motionflow.stages.base import FileArtifact

__all__ = ["MIN_VALIDITY", "Published", "PublishedUrls", "Publisher", "content_type"]

MIN_VALIDITY = 6 * 3600.0
"""A remembered URL is reused only if it stays valid this long (jobs can queue for hours)."""

_TYPES = {".mp4": "video/mp4", ".mov": "video/quicktime", ".png": "image/png", ".jpg": "image/jpeg"}


def content_type(ext: str) -> str:
    """The MIME type to serve a file with, from its extension (``.mp4`` → ``video/mp4``)."""
    ext = ext.lower()
    return _TYPES.get(ext) or mimetypes.guess_type(f"x{ext}")[0] or "application/octet-stream"


@dataclass(frozen=True)
class Published:
    """A URL for a file, and when it stops working.

    Attributes:
        url: an http(s) URL the service can GET without credentials.
        expires_at: Unix time the URL stops working, or None if it does not expire.
    """

    url: str
    expires_at: float | None = None


class Publisher(Protocol):
    """Makes local files fetchable by the service.

    Attributes:
        kind: the publisher's kind as written in a recipe (``static``, ``s3``, ...).
        identity: what its URLs are remembered under (kind plus destination); an empty
            identity means "do not remember" (the URLs die with the process).
    """

    kind: str
    identity: str

    async def publish(self, artifact: FileArtifact) -> Published:
        """Make ``artifact`` fetchable and return its URL.

        Raises:
            PublishError: the file could not be published (the message names the file and
                what to fix); nothing was submitted.
        """
        ...

    async def aclose(self) -> None:
        """Release sockets, threads and clients."""
        ...


class _Memo(Protocol):
    def get(self, name: str) -> Any: ...

    def set(self, name: str, value: Any) -> None: ...


class PublishedUrls:
    """Publishes each digest once per publisher identity, remembered in ``memo``.

    Concurrent requests for one digest share one publish (a per-digest lock).

    Args:
        publisher: the publisher to use.
        memo: a key-value store that survives the process (the cache), or None.
        clock: Unix time, for expiring URLs.
    """

    def __init__(self, publisher: Publisher, memo: _Memo | None, clock: Any = time.time) -> None:
        self.publisher = publisher
        self._memo = memo if publisher.identity else None
        self._clock = clock
        self._locks: dict[str, asyncio.Lock] = {}
        self.published = 0
        """How many files were actually published (not remembered) by this object."""

    def _name(self, digest: str) -> str:
        return f"publish:{self.publisher.identity}:{digest}"

    def _remembered(self, digest: str) -> str | None:
        if self._memo is None:
            return None
        found = self._memo.get(self._name(digest))
        if not isinstance(found, dict) or not isinstance(found.get("url"), str):
            return None
        expires = found.get("expires_at")
        if isinstance(expires, int | float) and expires - self._clock() < MIN_VALIDITY:
            return None
        return str(found["url"])

    async def url(self, artifact: FileArtifact) -> str:
        """The URL of ``artifact``, publishing it only if this digest was not published yet.

        Raises:
            PublishError: publishing failed.
        """
        lock = self._locks.setdefault(artifact.digest, asyncio.Lock())
        async with lock:
            known = self._remembered(artifact.digest)
            if known is not None:
                return known
            done = await self.publisher.publish(artifact)
            self.published += 1
            if self._memo is not None:
                self._memo.set(
                    self._name(artifact.digest), {"url": done.url, "expires_at": done.expires_at}
                )
            return done.url
