"""Check that a URL still serves a file's bytes, before a paid job sends the service there.

A remembered URL can outlive what it points at: the published copy was deleted, the web
server moved, a bucket lifecycle rule expired the object, the origin of a remote input changed
its file. The service would fetch a 404 (or other bytes) and still charge for the job. So
before a URL is used, :func:`url_problem` asks it: a ``HEAD`` first; when that is not a clear
yes (many servers and every presigned S3 GET URL refuse ``HEAD``), a ``GET`` of the first
:data:`SNIFF_BYTES` bytes (``Range``), whose size and bytes must match the file's.

The request carries no credentials: no ``Authorization``, no API key, no cookies; a presigned
URL carries its own signature in its query. Messages show URLs through :func:`redact_url`, which
drops the query (a presigned signature is a credential for the object).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import httpx

__all__ = ["CHECK_TIMEOUT", "SNIFF_BYTES", "redact_url", "url_problem"]

CHECK_TIMEOUT = 10.0
"""Seconds to wait for each answer: a URL that slow to answer us is not one to pay for."""

SNIFF_BYTES = 16
"""How many leading bytes of the file the ranged ``GET`` compares."""


def redact_url(url: str) -> str:
    """``url`` without its query and fragment (``https://host/a.mp4?…``), for messages."""
    base, sep, _ = url.partition("?")
    base = base.partition("#")[0]
    return f"{base}?…" if sep else base


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _total_size(response: httpx.Response) -> int | None:
    """The size of the whole object, from ``Content-Range`` (206) or ``Content-Length`` (200)."""
    if "content-encoding" in response.headers:
        return None  # the length is of the encoded body
    if response.status_code == 206:
        total = response.headers.get("content-range", "").rpartition("/")[2].strip()
        return int(total) if total.isdigit() else None
    length = response.headers.get("content-length", "").strip()
    return int(length) if length.isdigit() else None


async def url_problem(
    url: str,
    path: Path,
    *,
    timeout: float = CHECK_TIMEOUT,
    transport: httpx.AsyncBaseTransport | None = None,
) -> str | None:
    """Why ``url`` does not serve the bytes of ``path``, or None when it does.

    Only ``http`` and ``https`` URLs are asked; anything else (a storage path the upload
    endpoint returned) cannot be checked from here and is taken as it is (None).

    Args:
        url: the URL the service would fetch.
        path: the local file it should serve.
        timeout: seconds to wait for each answer.
        transport: the HTTP transport (tests pass ``httpx.MockTransport``); default: the
            network, through the environment's proxy settings except for loopback hosts.

    Returns:
        A short reason (``HTTP 404``, ``connection refused``, ``it serves 10 bytes, the file
        has 69235``) or None.
    """
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return "it is not a valid URL"
    if parsed.scheme not in ("http", "https"):
        return None
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(SNIFF_BYTES)
    client = httpx.AsyncClient(
        timeout=httpx.Timeout(timeout),
        follow_redirects=True,
        trust_env=not _is_loopback(parsed.host),
        transport=transport,
    )
    try:
        async with client:
            answer = await client.head(url)
            if answer.is_success and _total_size(answer) in (None, size):
                return None
            wanted = {"Range": f"bytes=0-{SNIFF_BYTES - 1}", "Accept-Encoding": "identity"}
            async with client.stream("GET", url, headers=wanted) as response:
                if response.status_code not in (200, 206):
                    return f"HTTP {response.status_code}"
                total = _total_size(response)
                if total is not None and total != size:
                    return f"it serves {total} bytes, the file has {size}"
                got = b""
                async for chunk in response.aiter_bytes():
                    got += chunk
                    if len(got) >= len(head):
                        break
    except httpx.TimeoutException:
        return f"no answer within {timeout:g} s"
    except httpx.HTTPError as exc:
        detail = str(exc).strip() or type(exc).__name__
        return f"{type(exc).__name__}: {detail}"
    if got[: len(head)] != head:
        return "it serves other bytes than the file"
    return None
