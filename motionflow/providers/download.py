"""Download an output video to disk: streamed, size-capped, retried, never with the API key."""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

import httpx

from motionflow.errors import CacheError, ProviderError
from motionflow.providers.connection import RETRY_AFTER_CEILING, Connection, bare
from motionflow.providers.envelopes import parse_retry_after

__all__ = ["download"]

_CHUNK = 1 << 16


async def download(conn: Connection, url: str, dest: Path, *, max_bytes: int) -> int:
    """Stream an output video to ``dest`` (temp file, fsync, rename), without the key.

    Transient failures (connection errors, timeouts, 429, 5xx) are retried; a failed
    download is never a reason to generate again.

    Returns:
        The number of bytes written.

    Raises:
        ProviderError: the URL keeps failing, answers 4xx (expired?) or exceeds
            ``max_bytes``.
        CacheError: ``dest`` cannot be written.
    """
    shown = bare(url)
    problem = ""
    for attempt in range(conn.max_attempts):
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")
        try:
            result = await _download_once(conn, url, tmp, max_bytes)
        except httpx.TransportError as exc:
            problem = f"{type(exc).__name__}: {exc}"
            delay = conn.backoff(attempt)
        else:
            if isinstance(result, int):
                try:
                    tmp.replace(dest)
                except OSError as exc:
                    msg = f"cannot store the download at {str(dest)!r}: {exc}"
                    raise CacheError(msg) from exc
                return result
            problem, delay = result
        finally:
            tmp.unlink(missing_ok=True)
        if attempt + 1 < conn.max_attempts:
            await conn.sleep(delay)
    msg = (
        f"cannot download {shown!r}: {conn.redact(problem)} (after {conn.max_attempts} "
        "attempts); run again to retry the download (the job is not generated again)"
    )
    raise ProviderError(msg)


async def _download_once(
    conn: Connection, url: str, tmp: Path, max_bytes: int
) -> int | tuple[str, float]:
    """One download attempt into ``tmp``: its size, or a transient problem and a delay."""
    shown = bare(url)
    # No Authorization header: signed output URLs must never see the key.
    async with conn.http.stream(
        "GET", url, headers={"Accept": "*/*"}, follow_redirects=True
    ) as response:
        status = response.status_code
        if status == 429 or status >= 500:
            after = parse_retry_after(response.headers.get("Retry-After"))
            delay = min(after if after is not None else conn.backoff(0), RETRY_AFTER_CEILING)
            return f"HTTP {status}", delay
        if not response.is_success:
            msg = (
                f"cannot download {shown!r}: HTTP {status} {response.reason_phrase} "
                "(the signed URL may have expired; output URLs last 7 days)"
            )
            raise ProviderError(msg)
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            msg = f"refusing to download {shown!r}: {declared} bytes > limit {max_bytes}"
            raise ProviderError(msg)
        size = 0
        try:
            tmp.parent.mkdir(parents=True, exist_ok=True)
            with tmp.open("wb") as fh:
                async for chunk in response.aiter_bytes(_CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        msg = f"refusing to download {shown!r}: more than {max_bytes} bytes"
                        raise ProviderError(msg)
                    fh.write(chunk)
                fh.flush()
                with contextlib.suppress(OSError):
                    os.fsync(fh.fileno())
        except OSError as exc:
            msg = f"cannot write the download to {str(tmp.parent)!r}: {exc}"
            raise CacheError(msg) from exc
        return size
