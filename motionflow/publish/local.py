"""Publishers that need no cloud: ``url`` (pass-through), ``static`` (a served folder), loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from motionflow.artifacts import FileArtifact
from motionflow.errors import PublishError
from motionflow.keys import digest_file
from motionflow.outfile import atomic_copy
from motionflow.publish.base import Published
from motionflow.publish.fileserver import FileServer

__all__ = ["LoopbackPublisher", "StaticPublisher", "UrlPublisher", "published_name"]


def published_name(artifact: FileArtifact) -> str:
    """The content-addressed file name a file is published under: ``<hex digest><ext>``."""
    return artifact.digest.split(":", 1)[-1] + artifact.ext.lower()


class UrlPublisher:
    """Passes through inputs that came from an http(s) URL; local files cannot be published.

    Args:
        origin_of: the URL a digest was downloaded from, or None (the cache remembers it).
    """

    kind = "url"
    identity = ""  # nothing to remember: the origin is already known
    serve_hint = (
        "the input's URL no longer serves the file it was fetched as; point the input at a "
        "URL that does, or use publish: {kind: static} or {kind: s3}"
    )

    def __init__(self, origin_of: Callable[[str], str | None]) -> None:
        self._origin_of = origin_of

    async def publish(self, artifact: FileArtifact) -> Published:
        """The URL ``artifact`` was fetched from.

        Raises:
            PublishError: the file is local (or was made by a stage), so it has no URL.
        """
        origin = self._origin_of(artifact.digest)
        if origin is None:
            msg = (
                f"the url publisher can only pass on inputs that came from a URL, and "
                f"{str(artifact.path)!r} is a local or generated file; use publish: "
                "{kind: static}, {kind: s3} or {kind: empiriolabs-upload}. Nothing was submitted"
            )
            raise PublishError(msg)
        return Published(origin)

    async def aclose(self) -> None:
        """Nothing to release."""


class StaticPublisher:
    """Copies files into ``folder``, which a web server publishes at ``base_url``.

    Files are named by content (``<digest><ext>``), so a file is copied once and a URL never
    changes meaning. The copy is atomic (temp file, rename): a fetch never sees half a file.

    Args:
        folder: the served folder.
        base_url: the http(s) URL the folder is served at.
    """

    kind = "static"

    def __init__(self, folder: Path, base_url: str) -> None:
        self.folder = folder
        self.base_url = base_url.rstrip("/")
        self.identity = f"static:{self.base_url}"
        self.serve_hint = (
            f"make the web server serve the folder {str(folder)!r} at {self.base_url!r} "
            "(publish.dir and publish.base_url must name the same place)"
        )

    async def publish(self, artifact: FileArtifact) -> Published:
        """Copy ``artifact`` into the folder (unless it is there, intact) and return its URL.

        Raises:
            PublishError: the folder cannot be written.
        """
        await self.restore(artifact)
        return Published(f"{self.base_url}/{published_name(artifact)}")

    async def restore(self, artifact: FileArtifact) -> bool:
        """Copy ``artifact`` into the folder unless an intact copy (same size and digest) is there.

        Returns:
            True when it had to be copied.

        Raises:
            PublishError: the folder cannot be written.
        """
        dest = self.folder / published_name(artifact)
        if await asyncio.to_thread(_intact, dest, artifact):
            return False
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            # readable by the web server, typically another user
            await asyncio.to_thread(atomic_copy, artifact.path, dest, mode=0o644)
        except OSError as exc:
            msg = (
                f"cannot publish {str(artifact.path)!r} into {str(self.folder)!r}: "
                f"{exc.strerror or exc}; fix publish.dir or its permissions. "
                "Nothing was submitted"
            )
            raise PublishError(msg) from exc
        return True

    async def aclose(self) -> None:
        """Nothing to release."""


def _intact(dest: Path, artifact: FileArtifact) -> bool:
    """Whether ``dest`` holds exactly ``artifact``'s bytes (size first: no read when it differs)."""
    try:
        if not dest.is_file() or dest.stat().st_size != artifact.path.stat().st_size:
            return False
        return digest_file(dest) == artifact.digest
    except OSError:
        return False


class LoopbackPublisher:
    """Serves files from this process on 127.0.0.1: only a local fake server can fetch them.

    The URLs die with the process, so they are never remembered.
    """

    kind = "loopback"
    identity = ""

    def __init__(self) -> None:
        self.server = FileServer()

    async def publish(self, artifact: FileArtifact) -> Published:
        """Serve ``artifact`` and return its loopback URL."""
        return Published(self.server.add(artifact.path, published_name(artifact)))

    async def aclose(self) -> None:
        """Stop the file server."""
        self.server.stop()
