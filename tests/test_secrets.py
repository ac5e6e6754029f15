"""The API key never shows: redaction in all its spellings, key checks, envelopes, reprs."""

from __future__ import annotations

import asyncio
import base64
import json
import random
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest

from motionflow.errors import ProviderError, UsageError
from motionflow.fakeapi import FakeConfig, FakeEmpirioLabs
from motionflow.providers.empiriolabs import (
    EmpirioLabsClient,
    RequestRejected,
    SubmitInDoubt,
    SubmitRequest,
    check_api_key,
)
from motionflow.providers.envelopes import UsageRead, excerpt, parse_error
from motionflow.providers.ratelimit import RateLimiter
from motionflow.providers.redact import MASK, Redactor

KEY = "sk-empiriolabs-TOPSECRET0123456789"
ODD = "sk-empiriolabs-a/b+c=d'e\"f\\g%h&i j"  # every character an encoding changes
BASE = "https://api.test"
BODY = SubmitRequest(
    model="kling-v3-motion-control",
    prompt="A dancer spins.",
    reference_image="https://x.test/a.png",
    reference_video="https://x.test/m.mp4",
)


def spellings(key: str) -> dict[str, str]:
    """The ways ``key`` can be written in a text, worked out independently of redact.py."""
    raw = key.encode()
    return {
        "raw": key,
        "repr": repr(key),
        "repr unquoted": repr(key)[1:-1],
        "ascii": ascii(key),
        "bytes repr": repr(raw),
        "json": json.dumps(key),
        "json in json": json.dumps(json.dumps(key)),
        "repr of repr": repr(repr(key)),
        "quote": quote(key, safe=""),
        "quote path": quote(key),
        "quote_plus": quote_plus(key),
        "quote lower hex": quote(key, safe="").replace("%2F", "%2f").replace("%2B", "%2b"),
        "base64": base64.b64encode(raw).decode(),
        "base64 urlsafe": base64.urlsafe_b64encode(raw).decode(),
        "hex": raw.hex(),
        "HEX": raw.hex().upper(),
        **{
            f"basic auth, user of {n}": base64.b64encode(b"u" * n + b":" + raw).decode()
            for n in range(4)
        },
    }


def leaked(text: str, key: str = KEY) -> list[str]:
    """The spellings of ``key`` (or long enough pieces of it) that ``text`` still holds."""
    found = [name for name, form in spellings(key).items() if form in text]
    if key[:12] in text or key[-12:] in text or "TOPSECRET" in text:
        found.append("a piece")
    return found


# -- the Redactor ----------------------------------------------------------------------------


@pytest.mark.parametrize("key", [KEY, ODD, "k3y\r\nwith\u201ccurly\u201d\x07bell-é"])
@pytest.mark.parametrize("name", list(spellings(KEY)))
def test_every_spelling_of_the_key_is_blanked(key: str, name: str) -> None:
    form = spellings(key)[name]
    text = f"HTTP 401: invalid key {form} (header Authorization: Bearer {form})."
    redacted = Redactor(key)(text)
    assert not leaked(redacted, key), redacted
    assert redacted.startswith("HTTP 401: invalid key ") and MASK in redacted


def test_a_key_cut_short_by_an_excerpt_is_blanked() -> None:
    key = "plainkey-0123456789abcdef"  # not shaped like sk-...: only the key itself tells
    redactor = Redactor(key)
    for cut in (8, 15, len(key) - 1):
        text = excerpt(f"error: {key} was refused", limit=len("error: ") + cut + 1)
        assert text.endswith("…") and key[:cut] in text
        assert key[:6] not in redactor(text)
    assert redactor("the word plainkey alone") == "the word plainkey alone"


def test_secret_shapes_are_blanked_whoever_they_belong_to() -> None:
    redact = Redactor(KEY)
    text = "a sk-other-abcdef123 b Bearer xyz.abc c x-api-key: zzz999 d"
    assert redact(text) == f"a {MASK} b {MASK} c {MASK} d"
    assert redact("nothing secret here: 401 invalid_api_key") == (
        "nothing secret here: 401 invalid_api_key"
    )
    assert Redactor("")("Bearer abc") == MASK  # no key: only the shapes


def test_scrub_cleans_messages_causes_and_contexts() -> None:
    inner = httpx.LocalProtocolError(f"Illegal header value {('Bearer ' + KEY).encode()!r}")
    try:
        try:
            raise inner
        except httpx.LocalProtocolError as exc:
            raise ProviderError(f"cannot submit: {exc}") from exc
    except ProviderError as outer:
        Redactor(KEY).scrub(outer)
        assert not leaked(str(outer)) and not leaked(repr(outer))
        assert outer.__cause__ is inner and not leaked(str(inner))


def test_h11_error_text_for_a_key_with_a_line_break_is_blanked() -> None:
    """The real text httpx/h11 produce for an illegal header, over loopback."""
    bad = "sk-empiriolabs-TOPSECRET\r\n0123456789"

    async def attempt(url: str) -> str:
        async with httpx.AsyncClient(trust_env=False) as http:
            try:
                await http.get(f"{url}/v1/jobs/x", headers={"Authorization": f"Bearer {bad}"})
            except httpx.LocalProtocolError as exc:
                return str(exc)
        return ""

    with FakeEmpirioLabs(FakeConfig(render=False, fetch_references=False)) as fake:
        text = asyncio.run(attempt(fake.url))
    assert "TOPSECRET" in text  # h11 shows it, repr-escaped ...
    assert "TOPSECRET" not in Redactor(bad)(text)  # ... and the redactor still finds it


def test_the_redactor_repr_hides_the_key() -> None:
    assert KEY not in repr(Redactor(KEY)) and KEY not in str(Redactor(KEY))


# -- the key is checked before anything is sent or journaled -------------------------------


@pytest.mark.parametrize(
    ("key", "says"),
    [
        ("", "is empty"),
        ("sk-empiriolabs-TOPSECRET\n0123", "a line break at position 25"),
        ("sk-empiriolabs-TOPSECRET\r\n0123", "a line break at position 25"),
        ("sk-empiriolabs-TOP SECRET", "a space at position 19"),
        ("sk-empiriolabs-TOP\tSECRET", "a tab at position 19"),
        ("\u201csk-empiriolabs-TOPSECRET\u201d", "typographic dash or quote (U+201C"),
        ("sk-empiriolabs-TOPSECRETé", "non-ASCII character (U+00E9) at position 25"),
        ("sk-empiriolabs-TOPSECRET\x00", "a control character (U+0000) at position 25"),
        ("sk-empiriolabs-TOPSECRET\x7f", "a control character (U+007F) at position 25"),
        ("sk-empiriolabs-TOP\u00a0SECRET", "whitespace character (U+00A0) at position 19"),
        ("TOPSECR", "too short"),
        ("sk-" + "TOPSECRET" * 60, "too long"),
    ],
)
def test_a_key_that_cannot_be_one_is_refused_without_showing_it(key: str, says: str) -> None:
    with pytest.raises(UsageError, match="EMPIRIOLABS_API_KEY") as checked:
        check_api_key(key)
    message = str(checked.value)
    assert says in message and "TOPSECR" not in message and checked.value.exit_code == 2
    http = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(500)))
    with pytest.raises(UsageError) as built:
        EmpirioLabsClient(http, api_key=key, base_url=BASE)
    assert str(built.value) == message or not key
    with pytest.raises(UsageError) as from_env:
        EmpirioLabsClient.from_env(http, env={"EMPIRIOLABS_API_KEY": key})
    assert "TOPSECR" not in str(from_env.value)


def test_surrounding_whitespace_in_the_environment_is_ignored() -> None:
    http = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(500)))
    client = EmpirioLabsClient.from_env(http, env={"EMPIRIOLABS_API_KEY": f"  {KEY}\n"})
    assert KEY not in repr(client)
    check_api_key(KEY)
    check_api_key("sk-empiriolabs-simulated")


# -- every field of every error envelope, every exception text --------------------------------

ENVELOPES: dict[str, Callable[[str], dict[str, Any]]] = {
    "openai message": lambda k: {"error": {"message": f"bad key {k}", "code": "invalid"}},
    "openai code": lambda k: {"error": {"message": "bad", "code": f"key_{k}", "type": "x"}},
    "openai type": lambda k: {"error": {"message": "bad", "type": f"{k}"}},
    "openai param": lambda k: {"error": {"message": "bad", "code": "c", "param": k}},
    "anthropic type": lambda k: {"type": "error", "error": {"type": k, "message": "m"}},
    "anthropic message": lambda k: {"type": "error", "error": {"type": "t", "message": k}},
    "flat error": lambda k: {"error": k, "message": "m"},
    "flat message": lambda k: {"error": "e", "message": f"{k!r}"},
    "flat param": lambda k: {"error": "e", "message": "m", "param": {"value": k}},
    "flat code and type": lambda k: {"message": "m", "code": k, "type": k},
    "detail only": lambda k: {"detail": quote_plus(k)},
}
SPELLED = ["raw", "repr", "json", "quote", "base64", "basic auth, user of 2", "HEX"]


def call(
    handler: Callable[[httpx.Request], httpx.Response],
    action: Callable[[EmpirioLabsClient], Any],
    key: str = KEY,
) -> Any:
    async def main() -> Any:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:

            async def no_wait(_: float) -> None:
                return None

            client = EmpirioLabsClient(
                http, api_key=key, base_url=BASE, sleep=no_wait, rng=random.Random(1)
            )
            return await action(client)

    return asyncio.run(main())


def every_text(exc: BaseException) -> str:
    """Everything an exception could print: messages, reprs, attributes, causes."""
    parts: list[str] = []
    current: BaseException | None = exc
    while current is not None:
        parts += [str(current), repr(current), repr(vars(current))]
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


ACTIONS: dict[str, Callable[[EmpirioLabsClient], Any]] = {
    "submit": lambda c: c.submit(BODY, idempotency_key="idem-1"),
    "poll": lambda c: c.poll("job-1"),
    "usage": lambda c: c.usage(datetime(2025, 1, 1, tzinfo=UTC)),
    "upload": lambda c: c.upload(Path(__file__), content_type="text/plain"),
}


@pytest.mark.parametrize("status", [400, 401, 402, 403, 404, 409, 422, 500, 503])
@pytest.mark.parametrize("shape", list(ENVELOPES))
@pytest.mark.parametrize("spelling", SPELLED)
def test_no_field_of_an_error_envelope_shows_the_key(
    status: int, shape: str, spelling: str
) -> None:
    echoed = spellings(KEY)[spelling]
    body = ENVELOPES[shape](echoed)
    action = "submit" if status in {400, 401, 402, 422, 500} else "poll"
    with pytest.raises(ProviderError) as info:
        call(lambda r: httpx.Response(status, json=body), ACTIONS[action])
    text = every_text(info.value)
    assert not leaked(text), (leaked(text), text)
    if isinstance(info.value, RequestRejected) and info.value.param:
        assert not leaked(info.value.param)
    if status == 500:
        assert isinstance(info.value, SubmitInDoubt)


@pytest.mark.parametrize("action", list(ACTIONS))
def test_every_public_call_raises_key_free_errors(action: str) -> None:
    body = {"error": {"message": KEY, "code": KEY, "type": KEY, "param": KEY}}
    with pytest.raises(ProviderError) as info:
        call(lambda r: httpx.Response(422, json=body), ACTIONS[action])
    assert not leaked(every_text(info.value))


def test_parse_error_redacts_every_field_before_cutting_it() -> None:
    long = "x" * 395 + KEY  # the excerpt limit falls inside the key
    body = json.dumps(
        {"error": {"message": long, "code": f"c {KEY}", "type": KEY[:20], "param": KEY}}
    )
    info = parse_error(400, "Bad", body.encode(), redact=Redactor(KEY))
    for value in (info.message, info.code, info.type, info.param or ""):
        assert not leaked(value) and "\n" not in value


def test_a_transport_error_quoting_the_key_leaves_the_submit_in_doubt_but_key_free() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadError(f"reset while sending {request.headers['Authorization']!r}")

    with pytest.raises(SubmitInDoubt) as info:
        call(handler, ACTIONS["submit"])
    assert not leaked(every_text(info.value))


def test_an_unsendable_header_is_refused_before_anything_is_sent() -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={"job_id": "j"})

    with pytest.raises(ProviderError, match="nothing was sent") as info:
        call(handler, lambda c: c.submit(BODY, idempotency_key="idem\r\n1"))
    assert not isinstance(info.value, SubmitInDoubt) and sent == []


def test_what_a_job_says_about_the_key_is_blanked() -> None:
    job = {"job_id": "job-1", "status": f"weird {KEY}", "error": None}
    failed = {"job_id": "job-1", "status": "failed", "error": {"message": f"bad {KEY}"}}

    async def scenario(client: EmpirioLabsClient) -> tuple[Any, Any, list[str]]:
        first = await client.poll("job-1")
        second = await client.poll("job-1")
        return first, second, client.warnings

    answers = iter([job, failed])
    first, second, warnings = call(lambda r: httpx.Response(200, json=next(answers)), scenario)
    assert not leaked(first.raw_status) and not leaked(second.error)
    assert warnings and not any(leaked(w) for w in warnings)


def test_no_object_holding_the_key_shows_it_in_its_repr() -> None:
    async def scenario(client: EmpirioLabsClient) -> list[str]:
        return [repr(client), str(client), repr(client._redact)]

    shown = call(lambda r: httpx.Response(200, json={"data": []}), scenario)
    assert not any(leaked(text) for text in shown)
    assert "sk-" not in repr(RateLimiter(5)) and "sk-" not in repr(UsageRead([], True, 1))
