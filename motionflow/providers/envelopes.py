"""EmpirioLabs request and response shapes: the submit body, errors, usage, Retry-After."""

from __future__ import annotations

import email.utils
import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from motionflow.errors import ProviderError, UsageError
from motionflow.providers.redact import SECRET_PATTERN

__all__ = [
    "LOST_HINT",
    "RESUBMIT_HINT",
    "AuthError",
    "ErrorInfo",
    "InsufficientCredits",
    "JobNotFound",
    "JobTimeout",
    "ModelNotFound",
    "RateLimited",
    "RequestRejected",
    "SubmitInDoubt",
    "SubmitRequest",
    "Submitted",
    "UsageEvent",
    "UsageRead",
    "error_for",
    "excerpt",
    "output_urls",
    "parse_error",
    "parse_retry_after",
    "parse_time",
    "parse_usage",
]

RESUBMIT_HINT = "to pay for it again, run with --resubmit-in-doubt"
LOST_HINT = "to pay for it again, run with --resubmit-lost"
_EXCERPT = 160
_MAX_PROMPT = 2500
_CAPS = {"image": 10.0, "video": 30.0}
_FIELD = 80  # code, type and param are short words; anything longer is cut
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def excerpt(
    body: bytes | str, *, limit: int = _EXCERPT, redact: Callable[[str], str] | None = None
) -> str:
    """A short, single-line, secret-free excerpt of a response body for an error message.

    Args:
        body: the text or raw bytes.
        limit: the most characters returned.
        redact: blanks the API key; applied before anything is cut or folded, so a key is
            never shown in part. Secret-shaped words are blanked in any case.
    """
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    if redact is not None:
        text = redact(text)
    text = SECRET_PATTERN.sub("[redacted]", _CONTROL.sub(" ", text))
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class ErrorInfo:
    """What an error body says, whichever of the three known shapes it had.

    Attributes:
        message: the human-readable message, or a status-line fallback.
        code: the machine code (``invalid_api_key``, ``model_not_found``, ...) or ``""``.
        type: the error type, or ``""``.
        param: the offending request field, or ``None``.
    """

    message: str
    code: str = ""
    type: str = ""
    param: str | None = None


def _text(value: object) -> str:
    return value if isinstance(value, str) else "" if value is None else str(value)


def parse_error(
    status: int, reason: str, body: bytes, *, redact: Callable[[str], str] | None = None
) -> ErrorInfo:
    """Read an error body: OpenAI-style, Anthropic-style, flat, or not JSON at all.

    Every field is passed through ``redact`` (then folded to one line and cut short), so an
    envelope that echoes the API key in its ``message``, ``code``, ``type`` or ``param`` shows
    none of it.

    Args:
        status: the HTTP status code.
        reason: the reason phrase of the status line.
        body: the raw response body.
        redact: blanks the API key (the client passes its redactor).

    Returns:
        The parsed error; never raises, whatever the body holds.
    """
    fallback = f"HTTP {status} {reason}".strip()
    try:
        data = json.loads(body) if body else None
    except ValueError:
        data = None
    if not isinstance(data, dict):
        snippet = excerpt(body, redact=redact)
        return ErrorInfo(f"{fallback}: {snippet}" if snippet else fallback)

    def clean(value: object, limit: int = _FIELD) -> str:
        return excerpt(_text(value), limit=limit, redact=redact)

    inner = data.get("error")
    if isinstance(inner, dict):  # OpenAI {"error": {...}} and Anthropic {"type": "error", ...}
        message = _text(inner.get("message")) or _text(data.get("message"))
        code = _text(inner.get("code")) or _text(inner.get("type"))
        return ErrorInfo(
            message=clean(message, 400) or fallback,
            code=clean(code),
            type=clean(inner.get("type")),
            param=clean(inner.get("param")) or None,
        )
    # Flat {"error": "code", "message": "..."} from some proxies, or {"message": ...} alone.
    message = _text(data.get("message")) or _text(data.get("detail"))
    return ErrorInfo(
        message=clean(message, 400) or clean(inner, 400) or fallback,
        code=clean(inner) or clean(data.get("code")),
        type=clean(data.get("type")),
        param=clean(data.get("param")) or None,
    )


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP-date).

    Returns:
        A non-negative number of seconds, or ``None`` when the header is absent or unreadable.
    """
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)


def parse_time(value: object) -> datetime | None:
    """An ISO-8601 string or a Unix timestamp as an aware datetime; ``None`` if unreadable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = value / 1000 if value > 1e11 else value  # milliseconds from some proxies
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str) and value:
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return when if when.tzinfo else when.replace(tzinfo=UTC)
    return None


def _urls_from(items: object, *, key: str | None = None) -> list[str]:
    if not isinstance(items, list):
        return []
    urls = []
    for item in items:
        value = item.get(key) if key and isinstance(item, dict) else item
        if isinstance(value, str) and value:
            urls.append(value)
    return urls


def output_urls(result: object) -> list[str]:
    """Output URLs from a job's ``result``, read in the contract's order, first shape wins.

    The order is ``result.data[*].url``, ``result.output_urls[*]``, ``result.urls[*]``,
    ``result.video.url``, ``result.video_url``, ``result.url``.
    """
    if not isinstance(result, dict):
        return []
    for urls in (
        _urls_from(result.get("data"), key="url"),
        _urls_from(result.get("output_urls")),
        _urls_from(result.get("urls")),
    ):
        if urls:
            return urls
    video = result.get("video")
    candidates = [video.get("url") if isinstance(video, dict) else None]
    candidates += [result.get("video_url"), result.get("url")]
    for value in candidates:
        if isinstance(value, str) and value:
            return [value]
    return []


@dataclass(frozen=True)
class UsageEvent:
    """One billed (or attempted) call from ``GET /v1/account/usage``.

    Attributes:
        cost_usd: dollars actually charged (``cost.amount``), or ``None`` if not reported.
        model: the model id.
        status: the event's status as reported.
        output_urls: output URLs, when the event lists them.
        created_at: when the call was made, or ``None``.
        job_id: the job id, when the event names it.
        event_id: the event's own id (the ``before`` cursor of the next page), if any.
        mode: the mode as the event spells it (``std``/``pro``/``720p``/...), if it says.
            Undocumented: shown to the user, never filtered or matched on.
    """

    cost_usd: float | None
    model: str
    status: str
    output_urls: list[str]
    created_at: datetime | None
    job_id: str | None = None
    event_id: str | None = None
    mode: str | None = None


def _cost(value: object) -> float | None:
    if isinstance(value, dict):
        value = value.get("amount")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def parse_usage(data: object) -> list[UsageEvent]:
    """Usage events from a usage body (``data``, ``events``, ``usage`` or a bare list)."""
    items: object = data
    if isinstance(data, dict):
        items = next(
            (data[k] for k in ("data", "events", "usage") if isinstance(data.get(k), list)), []
        )
    if not isinstance(items, list):
        return []
    events = []
    for item in items:
        if not isinstance(item, dict):
            continue
        urls = _urls_from(item.get("output_urls")) or output_urls(item.get("result"))
        cost = item.get("cost") if "cost" in item else item.get("cost_usd")
        events.append(
            UsageEvent(
                cost_usd=_cost(cost),
                model=_text(item.get("model")),
                status=_text(item.get("status")),
                output_urls=urls,
                created_at=parse_time(item.get("created_at") or item.get("timestamp")),
                job_id=_text(item.get("job_id")) or None,
                event_id=_text(item.get("id")) or None,
                mode=_word(item.get("mode")),
            )
        )
    return events


def _word(value: object) -> str | None:
    """A short text field read tolerantly: a non-empty string or number, else ``None``."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    return excerpt(str(value), limit=_FIELD) or None


@dataclass(frozen=True)
class UsageRead:
    """The result of reading the account usage across pages, and whether it is the whole.

    A partial read is never conclusive: a charge missing from it may be on a page not read.

    Attributes:
        events: the events read, newest first, in the order the pages came.
        complete: ``True`` only when the last page read said there was no more
            (``has_more`` false, or absent without a ``next_cursor``); ``False`` when the
            page budget ran out, a page said ``has_more`` without a way to ask for the next
            one, or a later page failed.
        pages: how many pages were read.
        problem: why the read is incomplete (empty when complete).
    """

    events: list[UsageEvent]
    complete: bool
    pages: int
    problem: str = ""


class AuthError(ProviderError):
    """The API key is missing or invalid (HTTP 401): the run stops."""


class InsufficientCredits(ProviderError):  # noqa: N818 - the name says it
    """The account is out of credits (HTTP 402): stop submitting, keep polling."""


class ModelNotFound(ProviderError):  # noqa: N818 - the name says it
    """The model id is unknown to the service (HTTP 404 ``model_not_found``)."""


class RequestRejected(ProviderError):  # noqa: N818 - the name says it
    """The service rejected the request (HTTP 400/422); ``param`` names the field if known."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class RateLimited(ProviderError):  # noqa: N818 - the name says it
    """HTTP 429 persisted past the retry budget; a submit that got this was not charged."""


class SubmitInDoubt(ProviderError):  # noqa: N818 - the name says it
    """A submit may have reached the service and been charged; it must not be resent.

    Attributes:
        idempotency_key: the ``Idempotency-Key`` that was sent.
        sent_at: when the POST was sent (look for usage events after it).
    """

    def __init__(self, message: str, *, idempotency_key: str, sent_at: datetime) -> None:
        super().__init__(message)
        self.idempotency_key = idempotency_key
        self.sent_at = sent_at

    @classmethod
    def after(cls, reason: str, idempotency_key: str, sent_at: datetime) -> SubmitInDoubt:
        """The error for a submit sent at ``sent_at`` whose outcome ``reason`` leaves open."""
        msg = (
            f"the submit sent at {sent_at.isoformat(timespec='seconds')} (Idempotency-Key "
            f"{idempotency_key!r}) may have reached EmpirioLabs and been charged "
            f"({reason.rstrip('.')}); it was not resent"
        )
        return cls(msg, idempotency_key=idempotency_key, sent_at=sent_at)


class JobNotFound(ProviderError):  # noqa: N818 - the name says it
    """The job is unknown or expired (job state is kept one hour after completion)."""

    def __init__(self, job_id: str) -> None:
        msg = (
            f"EmpirioLabs does not know job {job_id!r} (HTTP 404): it is unknown or expired "
            "(job state is kept one hour after completion). If its video was not downloaded, "
            f"the result is lost; {LOST_HINT}"
        )
        super().__init__(msg)
        self.job_id = job_id


class JobTimeout(ProviderError):  # noqa: N818 - the name says it
    """A job ran longer than its timeout (queue time excluded); it may still finish."""

    def __init__(self, job_id: str, timeout: float) -> None:
        msg = (
            f"job {job_id!r} has run for more than {timeout:g} s (time queued not counted); "
            "it is still billed and may still finish: raise EMPIRIOLABS_JOB_TIMEOUT and run "
            "again to resume polling it (it is not resubmitted)"
        )
        super().__init__(msg)
        self.job_id = job_id
        self.timeout = timeout


@dataclass(frozen=True)
class SubmitRequest:
    """The body of ``POST /v1/videos/generations``, checked before any money is at stake.

    Attributes:
        model: the model id (``kling-v3-motion-control``).
        prompt: 1..2500 characters.
        reference_image: public URL of the character image.
        reference_video: public URL of the motion source.
        character_orientation: ``image`` (max 10 s) or ``video`` (max 30 s).
        mode: ``std`` (720p) or ``pro`` (1080p).
        duration: 1..30 seconds, capped by the orientation.
        keep_original_sound: keep the reference video's audio track.
    """

    model: str
    prompt: str
    reference_image: str
    reference_video: str
    character_orientation: str = "image"
    mode: str = "std"
    duration: float = 5
    keep_original_sound: bool = True

    def __post_init__(self) -> None:
        problem = ""
        if not self.prompt.strip():
            problem = "the prompt is empty"
        elif len(self.prompt) > _MAX_PROMPT:
            problem = f"the prompt has {len(self.prompt)} characters (at most {_MAX_PROMPT})"
        elif self.character_orientation not in _CAPS:
            problem = f"character_orientation {self.character_orientation!r} is not image/video"
        elif self.mode not in {"std", "pro"}:
            problem = f"mode {self.mode!r} is not 'std' or 'pro'"
        elif not 1 <= self.duration <= _CAPS[self.character_orientation]:
            cap = _CAPS[self.character_orientation]
            problem = (
                f"duration {self.duration!r} is outside 1..{cap:g} s for orientation "
                f"{self.character_orientation!r}"
            )
        elif not all(
            u.startswith(("http://", "https://"))
            for u in (self.reference_image, self.reference_video)
        ):
            problem = "reference_image and reference_video must be public http(s) URLs"
        if problem:
            msg = f"cannot submit to {self.model!r}: {problem}; fix the stage's parameters"
            raise UsageError(msg)

    def to_json(self) -> dict[str, Any]:
        """The JSON body, every field explicit."""
        return asdict(self)


@dataclass(frozen=True)
class Submitted:
    """An accepted submit: from now on the job is billed whether anybody waits or not.

    Attributes:
        job_id: the provider's job id (write it to the journal at once).
        status: the status the service reported.
        poll_url: the poll URL if the service gave one, else ``None``.
        created_at: when the service created the job, if it said.
    """

    job_id: str
    status: str
    poll_url: str | None
    created_at: datetime | None


def error_for(status: int, what: str, info: ErrorInfo) -> ProviderError:
    """The exception for a non-retryable error answer (401, 402, 400/422, other 4xx).

    Args:
        status: the HTTP status.
        what: what the client was doing, completing "while trying to" ("poll job 'x'").
        info: the parsed body, already free of secrets: the client parses it with
            ``parse_error(..., redact=...)``, which blanks the key from every field.
    """
    message = info.message
    code = f" [{info.code}]" if info.code else ""
    if status == 401:
        msg = (
            f"EmpirioLabs refused the API key while trying to {what} (HTTP 401{code}: "
            f"{message}); set a valid key in EMPIRIOLABS_API_KEY"
        )
        return AuthError(msg)
    if status == 402:
        msg = (
            f"the EmpirioLabs account is out of credits (HTTP 402{code}: {message}); "
            "top up the account, then run again (jobs already submitted keep being polled)"
        )
        return InsufficientCredits(msg)
    if status in {400, 422}:
        field = f" (field {info.param!r})" if info.param else ""
        msg = f"EmpirioLabs rejected the request to {what}{field}: {message}{code}"
        return RequestRejected(msg, param=info.param)
    msg = f"EmpirioLabs answered HTTP {status}{code} when asked to {what}: {message}"
    return ProviderError(msg)
