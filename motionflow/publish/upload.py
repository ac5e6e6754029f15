"""The ``empiriolabs-upload`` publisher: the service's own upload endpoint (opt-in)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

from motionflow.artifacts import FileArtifact
from motionflow.errors import ProviderError, PublishError
from motionflow.publish.base import Published, content_type

__all__ = ["UploadPublisher", "Uploader"]

_REMEMBER = 24 * 3600.0  # how long an uploaded file is assumed to stay (undocumented)


class Uploader(Protocol):
    """What the upload publisher needs of an API client (the EmpirioLabs client has it)."""

    async def upload(self, path: Path, *, content_type: str) -> str:
        """Upload ``path``; return the URL (or storage path) the service gave it.

        Raises:
            ProviderError: the upload was refused or kept failing.
        """
        ...


class UploadPublisher:
    """Uploads files with ``POST /v1/files/upload`` and passes on the URL or path it returns.

    Whether ``kling-v3-motion-control`` accepts uploaded paths is not confirmed by the
    service's documentation, so this publisher is used only when a recipe asks for it.

    Args:
        client: returns the run's API client, an :class:`Uploader` (connecting on first use).
        base_url: the API root, to remember uploads per service.
    """

    kind = "empiriolabs-upload"
    serve_hint = (
        "the service does not serve the copy it just accepted at the URL it returned, so this "
        "model may not be able to fetch uploads either; use publish: {kind: static} or "
        "{kind: s3}"
    )

    def __init__(self, client: Callable[[], Awaitable[Uploader]], base_url: str) -> None:
        self._client = client
        self.identity = f"empiriolabs-upload:{base_url}"

    async def publish(self, artifact: FileArtifact) -> Published:
        """Upload ``artifact``; remembered for a day.

        Raises:
            PublishError: the upload failed (nothing was submitted).
        """
        client = await self._client()
        try:
            url = await client.upload(artifact.path, content_type=content_type(artifact.ext))
        except ProviderError as exc:
            msg = (
                f"cannot upload {str(artifact.path)!r} to EmpirioLabs: {exc}. Nothing was submitted"
            )
            raise PublishError(msg) from exc
        return Published(url, expires_at=time.time() + _REMEMBER + 6 * 3600)

    async def aclose(self) -> None:
        """The client belongs to the session."""
