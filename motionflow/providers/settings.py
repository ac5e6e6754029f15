"""The EmpirioLabs settings (API key, base URL), checked before anything is sent or journaled."""

from __future__ import annotations

import httpx

from motionflow.errors import UsageError

__all__ = ["DEFAULT_BASE_URL", "KEY_ENV", "check_api_key", "check_base_url", "odd_character"]

DEFAULT_BASE_URL = "https://api.empiriolabs.ai"
KEY_ENV = "EMPIRIOLABS_API_KEY"
_KEY_MIN = 8
_KEY_MAX = 512
_NAMED = {"\n": "a line break", "\r": "a line break", " ": "a space", "\t": "a tab"}


def odd_character(char: str) -> str | None:
    """What is wrong with ``char`` in a header value, or ``None`` if it is printable ASCII."""
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    if char.isspace():
        return f"a whitespace character (U+{code:04X})"
    if code < 0x20 or code == 0x7F:
        return f"a control character (U+{code:04X})"
    if 0x2010 <= code <= 0x201F:
        return f"a typographic dash or quote (U+{code:04X}; pasted from a document?)"
    if code > 0x7E:
        return f"a non-ASCII character (U+{code:04X})"
    return None


def check_base_url(base_url: str) -> httpx.URL:
    """``base_url`` (``EMPIRIOLABS_BASE_URL``) as a URL, once it is proven http(s) with a host.

    Raises:
        UsageError: it is not a URL, or not an http(s) one with a host.
    """
    try:
        base = httpx.URL(base_url.rstrip("/"))
    except (httpx.InvalidURL, TypeError) as exc:
        msg = f"the EmpirioLabs base URL {base_url!r} is not a URL; fix EMPIRIOLABS_BASE_URL"
        raise UsageError(msg) from exc
    if base.scheme not in {"http", "https"} or not base.host:
        msg = (
            f"the EmpirioLabs base URL {base_url!r} must be an http(s) URL with a host; "
            "fix EMPIRIOLABS_BASE_URL"
        )
        raise UsageError(msg)
    return base


def check_api_key(value: str) -> None:
    """Check that ``value`` can be an EmpirioLabs API key, without ever showing it.

    A key is 8 to 512 printable ASCII characters without whitespace. Call this on the key as
    it will be sent (:meth:`EmpirioLabsClient.from_env` strips surrounding whitespace from
    ``EMPIRIOLABS_API_KEY`` first) before anything is journaled: a key that cannot go into an
    HTTP header fails inside httpx, after the job was recorded as being submitted.

    Raises:
        UsageError: the key is empty, too short or long, or holds a character that cannot be
            in a key; the message names the problem and its position (1 is the first
            character), never the key.
    """
    fix = "copy the key again from the EmpirioLabs dashboard and set it alone"
    if not value:
        msg = f"{KEY_ENV} is empty; set it to your key (sk-empiriolabs-...)"
        raise UsageError(msg)
    for position, char in enumerate(value, start=1):
        problem = odd_character(char)
        if problem is not None:
            msg = (
                f"{KEY_ENV} contains {problem} at position {position} of {len(value)}; "
                f"a key is printable ASCII without spaces: {fix}"
            )
            raise UsageError(msg)
    if not _KEY_MIN <= len(value) <= _KEY_MAX:
        size = "short" if len(value) < _KEY_MIN else "long"
        msg = (
            f"{KEY_ENV} is too {size} to be an API key ({len(value)} characters, expected "
            f"{_KEY_MIN}..{_KEY_MAX}); {fix}"
        )
        raise UsageError(msg)
