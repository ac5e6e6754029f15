"""The ``empiriolabs-upload`` publisher: the service's own upload endpoint (opt-in)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from motionflow.artifacts import FileArtifact
from motionflow.errors import ProviderError, PublishError
from motionflow.publish.base import Published, content_type

if TYPE_CHECKING:
    from motionflow.providers.empiriolabs import EmpirioLabsClient

__all__ = ["UploadPublisher"]

_REMEMBER = 24 * 3600.0  # how long an uploaded file is assumed to stay (undocumented)


class UploadPublisher:
    """Uploads files with ``POST /v1/files/upload`` and passes on the URL or path it returns.

    Whether ``kling-v3-motion-control`` accepts uploaded paths is not confirmed by the
    service's documentation, so this publisher is used only when a recipe asks for it.

    Args:
        client: returns the run's API client (connecting on first use).
        base_url: the API root, to remember uploads per service.
    """

    kind = "empiriolabs-upload"
    serve_hint = (
        "the service does not serve the copy it just accepted at the URL it returned, so this "
        "model may not be able to fetch uploads either; use publish: {kind: static} or "
        "{kind: s3}"
    )

    def __init__(self, client: Callable[[], Awaitable[EmpirioLabsClient]], base_url: str) -> None:
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
