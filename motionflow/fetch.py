"""Fetching remote recipe inputs over http(s) once into the cache, with a size limit and pin."""

from __future__ import annotations

import asyncio
import hashlib
import re
from pathlib import Path
from typing import TYPE_CHECKING

from motionflow.artifacts import FileArtifact
from motionflow.cache.store import Cache
from motionflow.errors import InputError
from motionflow.recipe.schema import RemoteInput

if TYPE_CHECKING:
    import httpx

__all__ = ["FETCH_DEADLINE", "fetch_input"]

FETCH_DEADLINE = 60.0
"""Seconds a whole download may take (docs/recipes.md): a server that trickles is cut off."""

_READ_TIMEOUT = 60.0
# Control characters and white space have no place in a URL: httpx refuses them with an
# InvalidURL (a traceback), and a CR/LF would be a header injection with a laxer client.
_BAD_URL_CHARS = re.compile(r"[\x00-\x20\x7f]")
_HTML_TYPES = ("text/html", "application/xhtml+xml")
_HTML_STARTS = (b"<!doctype html", b"<html", b"<head", b"<body")
_SNIFF_BYTES = 512


def _check_url(name: str, url: str) -> None:
    import httpx

    bad = _BAD_URL_CHARS.search(url)
    if bad is not None:
        what = {"\r": "a carriage return", "\n": "a line break", " ": "a space"}.get(
            bad.group(), f"the control character {bad.group()!r}"
        )
        msg = (
            f"input {name!r}: the url {url!r} contains {what} at position {bad.start()}; "
            "write the URL on one line, with spaces encoded as %20"
        )
        raise InputError(msg)
    try:
        httpx.URL(url)
    except httpx.InvalidURL as exc:
        msg = f"input {name!r}: {url!r} is not a valid URL ({exc}); fix the url"
        raise InputError(msg) from exc


def _looks_like_html(content_type: str, head: bytes) -> bool:
    if content_type.split(";", 1)[0].strip().lower() in _HTML_TYPES:
        return True
    return head.lstrip(b"\xef\xbb\xbf \t\r\n").lower().startswith(_HTML_STARTS)


def _html_error(name: str, url: str) -> InputError:
    msg = (
        f"input {name!r}: {url} answered with a web page (HTML), not a media file: probably "
        "a login, cookie or download page. Nothing was stored; use the file's direct "
        "download link, or download it yourself and use a local file"
    )
    return InputError(msg)


async def fetch_input(
    name: str,
    spec: RemoteInput,
    cache: Cache,
    *,
    client: httpx.AsyncClient | None = None,
    deadline: float = FETCH_DEADLINE,
) -> FileArtifact:
    """Download ``spec.url`` into the blob store and return it as an artifact.

    Only http and https are fetched (the recipe schema refuses other schemes, and redirects
    to other schemes are refused). The download is refused past ``spec.max_mb``, past
    ``deadline`` seconds in all, when it is empty, shorter than announced, or a web page
    (HTML), and, when pinned, unless its sha256 matches. A refused download is neither
    stored nor remembered for its URL: the next run fetches again.

    Raises:
        InputError: network failure, HTTP error, too large, too slow, truncated, empty, a web
            page, or not what the pin says.
    """
    import httpx

    _check_url(name, spec.url)
    limit = int(spec.max_mb * 1024 * 1024)
    own = client is None
    http = client or httpx.AsyncClient(follow_redirects=True, timeout=_READ_TIMEOUT)
    sha = hashlib.sha256()
    received = [0]  # bytes so far, for the deadline's message
    try:
        with cache.temp_file() as tmp:
            try:
                async with asyncio.timeout(deadline):
                    await _download(name, spec, http, (tmp, sha, received), limit)
            except TimeoutError as exc:
                msg = (
                    f"input {name!r}: {spec.url} did not finish downloading within "
                    f"{deadline:g} s ({received[0]} bytes received before the cut); the server "
                    "is too slow or never ends. Nothing was stored; try again later, use a "
                    "faster host, or download it yourself and use a local file"
                )
                raise InputError(msg) from exc
            except httpx.InvalidURL as exc:
                # the recipe's URL was checked above, so a redirect led somewhere unfetchable
                msg = (
                    f"input {name!r}: {spec.url} redirected to a URL that cannot be fetched "
                    f"({exc}); only http(s) redirects are followed. Use the file's direct "
                    "http(s) link"
                )
                raise InputError(msg) from exc
            except httpx.HTTPError as exc:
                msg = (
                    f"input {name!r}: cannot download {spec.url}: {type(exc).__name__}: {exc}; "
                    "nothing was stored. Check the URL and your network, or use a local file"
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


async def _download(
    name: str,
    spec: RemoteInput,
    http: httpx.AsyncClient,
    sink: tuple[Path, hashlib._Hash, list[int]],
    limit: int,
) -> None:
    """Stream the body into a file, hashing it and counting its bytes in ``received[0]``.

    Raises:
        InputError: the body is refused (HTTP error, too large, empty, short, HTML).
    """
    tmp, sha, received = sink
    size = 0
    head = b""
    async with http.stream("GET", spec.url) as response:
        if response.status_code >= 400:
            msg = (
                f"input {name!r}: {spec.url} answered HTTP {response.status_code}; "
                "check the URL (is it public?)"
            )
            raise InputError(msg)
        content_type = response.headers.get("content-type", "")
        if _looks_like_html(content_type, b""):
            raise _html_error(name, spec.url)
        try:
            declared = int(response.headers.get("content-length") or 0)
        except ValueError:
            declared = 0
        if declared > limit:
            msg = (
                f"input {name!r}: {spec.url} is {declared / 1e6:.1f} MB, over the "
                f"{spec.max_mb:g} MB limit; raise max_mb for this input if you trust it"
            )
            raise InputError(msg)
        with tmp.open("wb") as out:
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                received[0] = size
                if size > limit:
                    msg = (
                        f"input {name!r}: {spec.url} sent more than the "
                        f"{spec.max_mb:g} MB limit; raise max_mb if you trust it"
                    )
                    raise InputError(msg)
                if len(head) < _SNIFF_BYTES:
                    head += chunk[: _SNIFF_BYTES - len(head)]
                    if len(head) >= _SNIFF_BYTES and _looks_like_html(content_type, head):
                        raise _html_error(name, spec.url)
                sha.update(chunk)
                out.write(chunk)
        identity = response.headers.get("content-encoding", "identity").lower() == "identity"
    if size == 0:
        msg = (
            f"input {name!r}: {spec.url} answered with an empty body (0 bytes); nothing was "
            "stored. Check the URL, or try again later"
        )
        raise InputError(msg)
    if _looks_like_html(content_type, head):
        raise _html_error(name, spec.url)
    if identity and declared and size != declared:
        msg = (
            f"input {name!r}: {spec.url} sent {size} of the {declared} bytes it announced (the "
            "download was cut short); nothing was stored. Try again"
        )
        raise InputError(msg)
