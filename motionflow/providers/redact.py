"""Redaction: one place that blanks an API key, in every form it takes in text, from messages."""

from __future__ import annotations

import base64
import functools
import json
import re
from urllib.parse import quote, quote_plus

__all__ = ["MASK", "SECRET_PATTERN", "Redactor"]

MASK = "[redacted]"
"""What a secret is replaced with."""

SECRET_PATTERN = re.compile(
    r"sk-[A-Za-z0-9_\-]{4,}"
    r"|Bearer\s+[^\s'\",;]+"
    r"|(?<![\w-])x-api-key[\"']?\s*[:=]\s*[\"']?[^\s'\",;]+",
    re.IGNORECASE,
)
"""Anything shaped like a secret, whoever's it is: ``sk-...`` keys, bearer tokens, x-api-key."""

_B64 = {"standard": "A-Za-z0-9+/", "urlsafe": "A-Za-z0-9_\\-"}
# A key cut short by an excerpt ("sk-empir…") still gives away its start: blank a tail of the
# text that is a prefix of the key at least this long.
_MIN_TAIL = 6


def _escapes(text: str) -> set[str]:
    """``text`` as the escaping layers of Python and JSON write it, quotes stripped."""
    forms = {repr(text)[1:-1], ascii(text)[1:-1], json.dumps(text)[1:-1]}
    forms.add(json.dumps(text, ensure_ascii=False)[1:-1])
    for encoding in ("utf-8", "latin-1"):
        try:
            forms.add(repr(text.encode(encoding))[2:-1])
        except UnicodeEncodeError:
            continue
    return forms


def _literal_forms(key: str) -> set[str]:
    """Every literal spelling of ``key`` worth blanking (escaped, twice escaped, URL-encoded)."""
    forms = {key}
    for _ in range(2):  # an escaped message inside another message: escaped twice
        forms |= {escaped for form in forms for escaped in _escapes(form)}
    for quoted in (quote(key, safe=""), quote(key), quote_plus(key)):
        forms.add(quoted)
        forms.add(re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), quoted))
    return {form for form in forms if form}


def _base64_cores(raw: bytes) -> list[str]:
    """The base64 text any encoding of ``prefix + raw + suffix`` must contain, per alignment.

    Basic auth encodes ``user:key``: the key starts at an unknown offset, so for each of the
    three byte alignments take the characters that only the key's own bytes determine.
    """
    cores = []
    for shift in range(3):
        pad = (3 - shift) % 3  # bytes before the key that complete a group
        body = raw[pad:]
        whole = len(body) - len(body) % 3
        if whole >= 6:
            cores.append(base64.b64encode(body[:whole]).decode())
    return cores


def _blank_if_any(match: re.Match[str], cores: list[str]) -> str:
    token = match.group()
    return MASK if any(core in token for core in cores) else token


class Redactor:
    """Blanks one secret, and anything shaped like a secret, from text.

    The key is matched raw; as ``repr``/``ascii``/bytes ``repr`` and JSON escape it (with or
    without quotes, once or twice escaped); URL-encoded (``quote``, ``quote_plus``, either hex
    case); in hex (either case); in base64 (standard and URL-safe), alone or inside a longer
    encoded value such as basic auth's ``user:key`` (the whole base64 token is blanked); and
    cut short at the end of a text (an excerpt's truncation). Then ``sk-...``, ``Bearer ...``
    and ``x-api-key: ...`` are blanked whatever key they hold (:data:`SECRET_PATTERN`).

    The repr never shows the key.

    Args:
        key: the secret; an empty key blanks only secret-shaped text.

    Example:
        >>> Redactor("sk-abc-123456")("401 for 'sk-abc-123456'")
        "401 for '[redacted]'"
    """

    def __init__(self, key: str) -> None:
        self.__key = key
        self._forms: re.Pattern[str] | None = None
        self._encoded: list[tuple[re.Pattern[str], list[str]]] = []
        if not key:
            return
        literals = sorted(_literal_forms(key), key=len, reverse=True)
        raw = key.encode("utf-8")
        # Case matters for the key (only its hex spelling is matched in either case).
        hex_form = f"(?i:{re.escape(raw.hex())})"
        self._forms = re.compile("|".join([*map(re.escape, literals), hex_form]))
        cores = _base64_cores(raw)
        if cores:
            shortest = min(map(len, cores))
            for chars, alphabet in _B64.items():
                spelled = [c.replace("+", "-").replace("/", "_") for c in cores]
                # Whole runs of the alphabet (a linear scan), then a substring test per run.
                run = re.compile(f"(?<![{alphabet}])[{alphabet}]{{{shortest},}}=*")
                self._encoded.append((run, spelled if chars == "urlsafe" else cores))

    def __repr__(self) -> str:
        return "Redactor(key='***')"

    def __call__(self, text: str) -> str:
        """``text`` with the key (in any of its forms) and secret-shaped words blanked."""
        if self._forms is not None:
            text = self._forms.sub(MASK, text)
            for run, cores in self._encoded:
                text = run.sub(functools.partial(_blank_if_any, cores=cores), text)
            text = self._blank_cut_tail(text)
        return SECRET_PATTERN.sub(MASK, text)

    def _blank_cut_tail(self, text: str) -> str:
        key = self.__key
        stripped = text.rstrip("…. ")
        longest = min(len(key) - 1, len(stripped))
        for size in range(longest, _MIN_TAIL - 1, -1):
            if stripped.endswith(key[:size]):
                return stripped[:-size] + MASK + text[len(stripped) :]
        return text

    def scrub(self, exc: BaseException) -> None:
        """Redact, in place, the text arguments of ``exc`` and of the exceptions it chains to.

        Used where the client's exceptions leave it, so that no message, cause or context
        (an httpx error quoting a header, say) shows the key.
        """
        seen: set[int] = set()
        todo: list[BaseException | None] = [exc]
        while todo:
            current = todo.pop()
            if current is None or id(current) in seen:
                continue
            seen.add(id(current))
            if isinstance(current, Exception):
                args = tuple(self(a) if isinstance(a, str) else a for a in current.args)
                if args != current.args:
                    current.args = args
            todo += [current.__cause__, current.__context__]
