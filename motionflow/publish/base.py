"""What every publisher does: turn a local file into a URL the service can fetch, once per digest.

The EmpirioLabs API fetches ``reference_image`` and ``reference_video`` itself, so local media
must be reachable at a URL first. A publisher makes that URL; :class:`PublishedUrls` remembers
it by the file's content digest (in the cache's key-value table), so the same bytes are
published once, whichever run, stage or variant needs them again. A URL that expires (a
presigned S3 URL) is reused only while it still has :data:`MIN_VALIDITY` seconds to live.

A remembered URL can outlive what it points at (the published copy deleted, the web server
moved, the object expired), and the service charges for a job whose reference answers 404.
So before a run first uses a URL, remembered or fresh, it is checked: a publisher that keeps
local copies (:class:`KeepsCopies`, the static folder) makes sure its copy is intact, and the
URL must serve the file's bytes (:func:`~motionflow.publish.verify.url_problem`). A stale URL is
published again; one that still does not serve is refused before anything is submitted.
Each digest is checked once per run, however many jobs use it.
"""

from __future__ import annotations

import asyncio
import mimetypes
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from motionflow.artifacts import FileArtifact
from motionflow.errors import PublishError
from motionflow.publish.verify import redact_url, url_problem

__all__ = [
    "MIN_VALIDITY",
    "KeepsCopies",
    "Published",
    "PublishedUrls",
    "Publisher",
    "content_type",
]

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

    A publisher may also have a ``serve_hint`` string: what to fix when one of its URLs does
    not serve the file it should (shown after "Fix:").
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


@runtime_checkable
class KeepsCopies(Protocol):
    """A publisher whose published copies live where it can look (the static folder)."""

    async def restore(self, artifact: FileArtifact) -> bool:
        """Make sure the published copy of ``artifact`` is intact, copying it again if not.

        Returns:
            True when the copy was missing or damaged and has been written again.

        Raises:
            PublishError: the copy could not be written.
        """
        ...


class _Memo(Protocol):
    def get(self, name: str) -> Any: ...

    def set(self, name: str, value: Any) -> None: ...


UrlCheck = Callable[[str, Path], Awaitable[str | None]]
"""Why a URL does not serve a file's bytes, or None; the default is
:func:`~motionflow.publish.verify.url_problem`."""

_GENERIC_HINT = "check the publisher's settings (docs/publishers.md)"


class PublishedUrls:
    """Publishes each digest once per publisher identity, remembered in ``memo``.

    Concurrent requests for one digest share one publish (a per-digest lock). Each digest is
    checked once per run (the object lives for one run): its answer, a URL or the refusal, is
    reused by every later job while the URL has :data:`MIN_VALIDITY` left; a short-lived URL is
    renewed (presigned again) for each job, without asking the server again.

    Args:
        publisher: the publisher to use.
        memo: a key-value store that survives the process (the cache), or None.
        clock: Unix time, for expiring URLs.
        check: asks a URL whether it serves a file; tests inject one over a mock transport.
    """

    def __init__(
        self,
        publisher: Publisher,
        memo: _Memo | None,
        clock: Any = time.time,
        check: UrlCheck = url_problem,
    ) -> None:
        self.publisher = publisher
        self._memo = memo if publisher.identity else None
        self._clock = clock
        self._check = check
        self._locks: dict[str, asyncio.Lock] = {}
        self._ready: dict[str, Published | PublishError] = {}
        self.published = 0
        """How many files were actually published (not remembered) by this object."""
        self.checked = 0
        """How many URLs were asked whether they serve their file."""

    def _name(self, digest: str) -> str:
        return f"publish:{self.publisher.identity}:{digest}"

    def _lasts(self, published: Published) -> bool:
        expires = published.expires_at
        return expires is None or expires - self._clock() >= MIN_VALIDITY

    def _remembered(self, digest: str) -> Published | None:
        if self._memo is None:
            return None
        found = self._memo.get(self._name(digest))
        if not isinstance(found, dict) or not isinstance(found.get("url"), str):
            return None
        expires = found.get("expires_at")
        known = Published(
            str(found["url"]), float(expires) if isinstance(expires, int | float) else None
        )
        return known if self._lasts(known) else None

    async def url(self, artifact: FileArtifact) -> str:
        """The URL of ``artifact``, checked to serve it; published only if it has to be.

        Raises:
            PublishError: publishing failed, or the URL does not serve the file even after
                publishing it again (nothing was submitted).
        """
        lock = self._locks.setdefault(artifact.digest, asyncio.Lock())
        async with lock:
            ready = self._ready.get(artifact.digest)
            if isinstance(ready, PublishError):
                raise PublishError(str(ready))  # a fresh exception per job: no shared traceback
            if ready is not None and self._lasts(ready):
                return ready.url
            try:
                # an earlier URL served it this run: renewing its signature needs no new check
                done = await self._usable(artifact, served=ready is not None)
            except PublishError as exc:
                self._ready[artifact.digest] = exc
                raise
            self._ready[artifact.digest] = done
            return done.url

    async def _usable(self, artifact: FileArtifact, *, served: bool) -> Published:
        stale: tuple[str, str] | None = None
        known = self._remembered(artifact.digest)
        if known is not None:
            if isinstance(self.publisher, KeepsCopies) and await self.publisher.restore(artifact):
                self.published += 1
            problem = await self._ask(known.url, artifact)
            if problem is None:
                return known
            stale = (known.url, problem)
        try:
            done = await self.publisher.publish(artifact)
        except PublishError as exc:
            if stale is None:
                raise
            msg = (
                f"{str(artifact.path)!r} was published at {redact_url(stale[0])!r}, which no "
                f"longer serves it ({stale[1]}), and publishing it again failed: {exc}"
            )
            raise PublishError(msg) from exc
        self.published += 1
        problem = None if served else await self._ask(done.url, artifact)
        if problem is not None:
            self._remember(artifact.digest, None)  # a URL that does not serve is not reused
            hint = getattr(self.publisher, "serve_hint", None) or _GENERIC_HINT
            again = ", even after publishing it again" if stale is not None else ""
            msg = (
                f"cannot use {str(artifact.path)!r} as a reference: its URL "
                f"{redact_url(done.url)!r} does not serve it ({problem}){again}; the service "
                f"would fetch nothing usable and still charge for the job. Fix: {hint}, then run "
                "again. Nothing was submitted"
            )
            raise PublishError(msg)
        self._remember(artifact.digest, done)
        return done

    async def _ask(self, url: str, artifact: FileArtifact) -> str | None:
        self.checked += 1
        return await self._check(url, artifact.path)

    def _remember(self, digest: str, done: Published | None) -> None:
        if self._memo is not None:
            value = None if done is None else {"url": done.url, "expires_at": done.expires_at}
            self._memo.set(self._name(digest), value)
