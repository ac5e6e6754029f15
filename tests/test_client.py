"""The EmpirioLabs client against httpx.MockTransport: the contract's error table, row by row."""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from motionflow.errors import ProviderError, UsageError
from motionflow.fakeapi import FakeConfig, FakeEmpirioLabs
from motionflow.providers.empiriolabs import (
    AuthError,
    EmpirioLabsClient,
    InsufficientCredits,
    JobNotFound,
    JobTimeout,
    ModelNotFound,
    RateLimited,
    RequestRejected,
    SubmitInDoubt,
    SubmitRequest,
)
from motionflow.providers.envelopes import parse_error, parse_retry_after
from motionflow.providers.ratelimit import RateLimiter
from motionflow.providers.status import FAILURE, RUNNING, SUCCESS, poll_interval

KEY = "sk-empiriolabs-TOPSECRET0123456789"
BASE = "https://api.test"
CDN = "https://cdn.example.net/out/v.mp4?sig=abc"
BODY = SubmitRequest(
    model="kling-v3-motion-control",
    prompt="A dancer spins.",
    reference_image="https://x.test/a.png",
    reference_video="https://x.test/m.mp4",
)
T = TypeVar("T")
Handler = Callable[[httpx.Request], httpx.Response]


@dataclass
class Harness:
    """A MockTransport handler plus a fake clock whose sleep advances it."""

    handler: Handler
    requests: list[httpx.Request] = field(default_factory=list)
    sleeps: list[float] = field(default_factory=list)
    now: float = 1000.0

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now

    def posts(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == "POST"]

    def call(self, fn: Callable[[EmpirioLabsClient], Awaitable[T]], **kwargs: Any) -> T:
        def record(request: httpx.Request) -> httpx.Response:
            self.requests.append(request)
            return self.handler(request)

        async def main() -> T:
            async with httpx.AsyncClient(transport=httpx.MockTransport(record)) as http:
                client = EmpirioLabsClient(
                    http,
                    api_key=KEY,
                    base_url=BASE,
                    sleep=self.sleep,
                    clock=self.clock,
                    rng=random.Random(7),
                    **kwargs,
                )
                return await fn(client)

        return asyncio.run(main())


def sequence(*steps: httpx.Response | Exception) -> Handler:
    """A handler answering with each step in turn (the last one repeats)."""
    queue = list(steps)

    def handler(request: httpx.Request) -> httpx.Response:
        step = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(step, Exception):
            raise step
        return step

    return handler


def accepted(**extra: Any) -> httpx.Response:
    return httpx.Response(200, json={"job_id": "job-1", "status": "queued", **extra})


def job(status: str, **extra: Any) -> httpx.Response:
    return httpx.Response(200, json={"job_id": "job-1", "status": status, **extra})


def submit(h: Harness, **kwargs: Any) -> Any:
    return h.call(lambda c: c.submit(BODY, idempotency_key="idem-1"), **kwargs)


def no_key(exc: BaseException) -> None:
    assert KEY not in str(exc) and KEY not in repr(exc) and "TOPSECRET" not in str(exc)


# -- submit: the never-pay-twice rows ----------------------------------------------------------


def test_submit_sends_key_idempotency_key_and_the_full_body() -> None:
    h = Harness(sequence(httpx.Response(202, json={"id": 42, "status": "queued"})))
    result = submit(h)
    assert result.job_id == "42" and result.status == "queued" and result.poll_url is None
    (request,) = h.posts()
    assert request.url == f"{BASE}/v1/videos/generations"
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert request.headers["Idempotency-Key"] == "idem-1"
    sent = json.loads(request.content)
    assert sent == {
        "model": "kling-v3-motion-control",
        "prompt": "A dancer spins.",
        "reference_image": "https://x.test/a.png",
        "reference_video": "https://x.test/m.mp4",
        "character_orientation": "image",
        "mode": "std",
        "duration": 5,
        "keep_original_sound": True,
    }


def test_connect_error_twice_then_success_is_three_attempts_one_accepted() -> None:
    h = Harness(sequence(httpx.ConnectError("refused"), httpx.ConnectError("refused"), accepted()))
    assert submit(h).job_id == "job-1"
    assert len(h.posts()) == 3 and len(h.sleeps) == 2


@pytest.mark.parametrize("exc", [httpx.ConnectError("dns"), httpx.ConnectTimeout("slow")])
def test_never_sent_errors_give_up_without_doubt(exc: Exception) -> None:
    h = Harness(sequence(exc))
    with pytest.raises(ProviderError, match="nothing was charged") as info:
        submit(h, max_attempts=3)
    assert not isinstance(info.value, SubmitInDoubt)
    assert len(h.posts()) == 3
    no_key(info.value)


def test_429_with_retry_after_seconds_waits_then_retries() -> None:
    h = Harness(sequence(httpx.Response(429, headers={"Retry-After": "2"}), accepted()))
    assert submit(h).job_id == "job-1"
    assert len(h.posts()) == 2 and h.sleeps == [2.0]


def test_429_with_an_http_date_is_honoured() -> None:
    when = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=10), usegmt=True)
    h = Harness(sequence(httpx.Response(429, headers={"Retry-After": when}), accepted()))
    submit(h)
    assert len(h.posts()) == 2 and 8 <= h.sleeps[0] <= 10


def test_429_without_retry_after_backs_off_and_penalises_the_limiter() -> None:
    h = Harness(sequence(httpx.Response(429)))
    limiter = RateLimiter(50, clock=h.clock, sleep=h.sleep)
    with pytest.raises(RateLimited) as info:
        submit(h, max_attempts=4, limiter=limiter)
    assert len(h.posts()) == 4
    assert h.sleeps[0] < h.sleeps[1] < h.sleeps[2]  # exponential backoff
    no_key(info.value)


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ReadTimeout("read"),
        httpx.RemoteProtocolError("peer closed connection"),
        httpx.ReadError("connection reset by peer"),
        httpx.WriteTimeout("write"),
    ],
)
def test_ambiguous_transport_errors_are_in_doubt_after_one_post(exc: Exception) -> None:
    h = Harness(sequence(exc, accepted()))
    before = datetime.now(UTC)
    with pytest.raises(SubmitInDoubt) as info:
        submit(h)
    assert len(h.posts()) == 1
    assert info.value.idempotency_key == "idem-1" and info.value.sent_at >= before
    assert "may have reached" in str(info.value)
    no_key(info.value)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_on_post_is_in_doubt_after_one_post(status: int) -> None:
    body = {"error": {"message": "upstream_error", "code": "upstream_error"}}
    h = Harness(sequence(httpx.Response(status, json=body), accepted()))
    with pytest.raises(SubmitInDoubt, match=f"HTTP {status}"):
        submit(h)
    assert len(h.posts()) == 1


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, text="<html>ok</html>"),
        httpx.Response(200, json={"status": "queued"}),
        httpx.Response(201, json=["job-1"]),
    ],
)
def test_a_2xx_without_a_readable_job_id_is_in_doubt(response: httpx.Response) -> None:
    h = Harness(sequence(response))
    with pytest.raises(SubmitInDoubt):
        submit(h)
    assert len(h.posts()) == 1


def test_401_stops_with_auth_error_and_never_echoes_the_key() -> None:
    body = {"error": {"message": f"invalid key {KEY}", "code": "invalid_api_key"}}
    h = Harness(sequence(httpx.Response(401, json=body)))
    with pytest.raises(AuthError, match="EMPIRIOLABS_API_KEY") as info:
        submit(h)
    assert len(h.posts()) == 1
    no_key(info.value)


def test_402_is_insufficient_credits() -> None:
    body = {"error": "insufficient_credits", "message": "Balance too low."}
    h = Harness(sequence(httpx.Response(402, json=body)))
    with pytest.raises(InsufficientCredits, match="Balance too low") as info:
        submit(h)
    assert len(h.posts()) == 1
    no_key(info.value)


def test_404_model_not_found() -> None:
    body = {"type": "error", "error": {"type": "model_not_found", "message": "No such model."}}
    h = Harness(sequence(httpx.Response(404, json=body)))
    with pytest.raises(ModelNotFound, match="kling-v3-motion-control") as info:
        submit(h)
    assert len(h.posts()) == 1
    no_key(info.value)


@pytest.mark.parametrize("status", [400, 422])
@pytest.mark.parametrize(
    "body",
    [
        {"error": {"message": "duration too long", "type": "invalid", "param": "duration"}},
        {"type": "error", "error": {"type": "invalid_request", "message": "duration too long"}},
        {"error": "invalid_request", "message": "duration too long", "param": "duration"},
    ],
)
def test_validation_errors_are_rejected_with_the_server_message(
    status: int, body: dict[str, Any]
) -> None:
    h = Harness(sequence(httpx.Response(status, json=body)))
    with pytest.raises(RequestRejected, match="duration too long") as info:
        submit(h)
    assert len(h.posts()) == 1
    if "param" in json.dumps(body):
        assert info.value.param == "duration"
    no_key(info.value)


def test_a_non_json_error_body_never_crashes() -> None:
    html = "<html><body>Forbidden\x00 by proxy " + "x" * 500 + "</body></html>"
    h = Harness(sequence(httpx.Response(403, text=html)))
    with pytest.raises(ProviderError, match="HTTP 403") as info:
        submit(h)
    assert len(str(info.value)) < 400 and "\x00" not in str(info.value)


# -- GETs: polls, retries, statuses, URLs -------------------------------------------------------


def poll(h: Harness, **kwargs: Any) -> Any:
    return h.call(lambda c: c.poll("job-1"), **kwargs)


def done() -> httpx.Response:
    return job("succeeded", result={"output_urls": [CDN]})


@pytest.mark.parametrize(
    "first",
    [
        httpx.Response(503, json={"error": {"message": "model_unavailable"}}),
        httpx.Response(502, text="Bad Gateway"),
        httpx.Response(429, headers={"Retry-After": "3"}),
        httpx.ReadTimeout("slow"),
        httpx.ConnectError("refused"),
        httpx.RemoteProtocolError("reset"),
        httpx.Response(200, text="{not json"),
    ],
)
def test_get_retries_transient_failures(first: httpx.Response | Exception) -> None:
    h = Harness(sequence(first, first, done()))
    result = poll(h)
    assert result.state == "succeeded" and len(h.requests) == 3 and len(h.sleeps) == 2
    if isinstance(first, httpx.Response) and first.status_code == 429:
        assert h.sleeps == [3.0, 3.0]


def test_get_gives_up_after_bounded_attempts() -> None:
    h = Harness(sequence(httpx.Response(200, text="{not json")))
    with pytest.raises(ProviderError, match="malformed JSON"):
        poll(h, max_attempts=3)
    assert len(h.requests) == 3


def test_404_on_a_job_names_it() -> None:
    h = Harness(sequence(httpx.Response(404, json={"error": {"message": "not found"}})))
    with pytest.raises(JobNotFound, match="job-1") as info:
        poll(h)
    assert info.value.job_id == "job-1" and len(h.requests) == 1


@pytest.mark.parametrize(
    ("raw", "state"),
    [(s, "succeeded") for s in sorted(SUCCESS)]
    + [(s, "failed") for s in sorted(FAILURE)]
    + [(s, "running") for s in sorted(RUNNING)]
    + [("COMPLETED", "succeeded"), ("In-Progress", "running")],
)
def test_every_status_synonym_is_normalised(raw: str, state: str) -> None:
    result = {"output_urls": [CDN]}
    h = Harness(sequence(job(raw, result=result, error={"message": "boom"}, progress=0.5)))
    observed = poll(h)
    assert observed.state == state and observed.raw_status == raw
    assert observed.error == ("boom" if state == "failed" else None)


def test_an_unknown_status_counts_as_running_and_is_reported_once() -> None:
    h = Harness(sequence(job("warming_up"), job("warming_up"), done()))

    async def scenario(client: EmpirioLabsClient) -> list[str]:
        first = await client.poll("job-1")
        second = await client.poll("job-1")
        assert first.state == second.state == "running" and not first.known_status
        return client.warnings

    warnings = h.call(scenario)
    assert len(warnings) == 1 and "warming_up" in warnings[0]


@pytest.mark.parametrize(
    "result",
    [
        {"data": [{"url": CDN}, {"url": CDN + "2"}]},
        {"output_urls": [CDN, CDN + "2"]},
        {"urls": [CDN, CDN + "2"]},
        {"video": {"url": CDN}},
        {"video_url": CDN},
        {"url": CDN},
    ],
)
def test_all_six_url_shapes(result: dict[str, Any]) -> None:
    h = Harness(sequence(job("completed", result={**result, "usage": {"seconds": 5}})))
    observed = poll(h)
    assert observed.output_urls[0] == CDN and observed.usage == {"seconds": 5}
    assert observed.progress == 1.0


def test_the_contract_order_wins_when_several_shapes_are_present() -> None:
    result = {"url": "https://c/last.mp4", "urls": ["https://c/third.mp4"]}
    h = Harness(sequence(job("done", result=result)))
    assert poll(h).output_urls == ["https://c/third.mp4"]


def test_a_completed_job_without_url_is_an_error_naming_it() -> None:
    h = Harness(sequence(job("succeeded", result={"usage": {}})))
    with pytest.raises(ProviderError, match="'job-1'"):
        poll(h)


def test_progress_is_a_fraction() -> None:
    h = Harness(sequence(job("running", progress=40)))
    assert poll(h).progress == 0.4


# -- where the key goes --------------------------------------------------------------------------


def test_a_foreign_poll_url_is_not_used_the_api_path_is() -> None:
    h = Harness(sequence(done()))
    h.call(lambda c: c.poll("job-1", poll_url="https://evil.example/v1/jobs/job-1"))
    (request,) = h.requests
    assert request.url.host == "api.test" and request.url.path == "/v1/jobs/job-1"


def test_a_poll_url_on_the_api_host_is_used() -> None:
    h = Harness(sequence(done()))
    h.call(lambda c: c.poll("job-1", poll_url="/v1/tasks/job-1"))
    assert h.requests[0].url == f"{BASE}/v1/tasks/job-1"


def test_a_redirect_to_another_host_is_not_followed_with_the_key() -> None:
    h = Harness(sequence(httpx.Response(302, headers={"Location": "https://evil.example/steal"})))
    with pytest.raises(ProviderError, match="another host") as info:
        poll(h)
    assert [r.url.host for r in h.requests] == ["api.test"]
    no_key(info.value)


def test_a_same_host_redirect_is_followed() -> None:
    h = Harness(sequence(httpx.Response(307, headers={"Location": "/v1/jobs/job-1b"}), done()))
    poll(h)
    assert [str(r.url) for r in h.requests] == [f"{BASE}/v1/jobs/job-1", f"{BASE}/v1/jobs/job-1b"]
    assert all(r.headers["Authorization"] == f"Bearer {KEY}" for r in h.requests)


def test_download_sends_no_authorization_and_writes_atomically(tmp_path: Path) -> None:
    h = Harness(sequence(httpx.Response(503), httpx.Response(200, content=b"video" * 100)))
    dest = tmp_path / "out" / "v.mp4"
    size = h.call(lambda c: c.download(CDN, dest, max_bytes=10_000))
    assert size == 500 and dest.read_bytes() == b"video" * 100
    assert len(h.requests) == 2 and all("Authorization" not in r.headers for r in h.requests)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["v.mp4"]


def test_download_from_the_api_host_still_has_no_key(tmp_path: Path) -> None:
    h = Harness(sequence(httpx.Response(200, content=b"v")))
    h.call(lambda c: c.download(f"{BASE}/files/v.mp4", tmp_path / "v.mp4", max_bytes=10))
    assert "Authorization" not in h.requests[0].headers


def test_download_over_the_limit_leaves_nothing(tmp_path: Path) -> None:
    h = Harness(sequence(httpx.Response(200, content=b"x" * 100)))
    with pytest.raises(ProviderError, match="refusing") as info:
        h.call(lambda c: c.download(CDN, tmp_path / "v.mp4", max_bytes=10))
    assert list(tmp_path.iterdir()) == [] and "sig=" not in str(info.value)


def test_an_expired_download_url_is_not_retried(tmp_path: Path) -> None:
    h = Harness(sequence(httpx.Response(403)))
    with pytest.raises(ProviderError, match="expired"):
        h.call(lambda c: c.download(CDN, tmp_path / "v.mp4", max_bytes=10))
    assert len(h.requests) == 1


def test_the_key_is_in_no_repr_and_from_env_needs_it() -> None:
    async def scenario(client: EmpirioLabsClient) -> str:
        return repr(client)

    assert KEY not in Harness(sequence(done())).call(scenario)
    http = httpx.AsyncClient(transport=httpx.MockTransport(sequence(done())))
    with pytest.raises(UsageError, match="EMPIRIOLABS_API_KEY") as info:
        EmpirioLabsClient.from_env(http, env={"EMPIRIOLABS_BASE_URL": BASE})
    no_key(info.value)
    client = EmpirioLabsClient.from_env(
        http, env={"EMPIRIOLABS_API_KEY": KEY, "EMPIRIOLABS_BASE_URL": "http://127.0.0.1:9/"}
    )
    assert client.base_url == "http://127.0.0.1:9" and KEY not in repr(client)
    with pytest.raises(UsageError, match="EMPIRIOLABS_BASE_URL"):
        EmpirioLabsClient(http, api_key=KEY, base_url="ftp://x")


# -- waiting -------------------------------------------------------------------------------------


def test_poll_interval_starts_near_5_s_and_grows_to_10_20_s() -> None:
    rng = random.Random(1)
    for _ in range(50):
        assert 3.75 <= poll_interval(0, rng) <= 6.25
        assert 10 <= poll_interval(12, rng) <= 20
        assert 10 <= poll_interval(500, rng) <= 20

    class Middle(random.Random):
        def uniform(self, a: float, b: float) -> float:
            return (a + b) / 2

    steps = [poll_interval(n, Middle()) for n in range(12)]
    assert steps[0] == 5.0 and steps == sorted(steps) and steps[-1] == 15.0


def test_queue_time_does_not_count_against_the_timeout() -> None:
    steps = [job("queued")] * 30 + [job("processing", progress=0.5)] * 3 + [done()]
    h = Harness(sequence(*steps))
    seen: list[float] = []
    result = h.call(
        lambda c: c.wait("job-1", timeout=60, on_progress=lambda j: seen.append(j.progress))
    )
    assert result.state == "succeeded" and sum(h.sleeps) > 300 and seen[-2:] == [0.5, 1.0]


def test_running_too_long_times_out_naming_the_job() -> None:
    h = Harness(sequence(job("queued"), job("queued"), job("running")))
    with pytest.raises(JobTimeout, match="job-1"):
        h.call(lambda c: c.wait("job-1", timeout=60))
    running_polls = len(h.requests) - 2
    assert 4 <= running_polls <= 8


def test_a_failed_job_is_returned_not_raised() -> None:
    h = Harness(sequence(job("running"), job("failed", error={"message": "face not found"})))
    result = h.call(lambda c: c.wait("job-1", timeout=60))
    assert result.state == "failed" and result.error == "face not found"


# -- usage, limiter, parsers -----------------------------------------------------------------------


def test_usage_filters_and_reads_cost_amount() -> None:
    events = {
        "data": [
            {
                "cost": {"amount": 0.7, "currency": "USD"},
                "model": "kling-v3-motion-control",
                "status": "completed",
                "output_urls": [CDN],
                "created_at": "2025-01-01T10:00:00Z",
                "job_id": "job-1",
            },
            {"cost": "0.14", "model": "m", "status": "failed", "created_at": 1735725600},
        ]
    }
    h = Harness(sequence(httpx.Response(200, json=events)))
    since = datetime(2025, 1, 1, tzinfo=UTC)
    got = h.call(lambda c: c.usage(since, model="kling-v3-motion-control", status="completed"))
    params = h.requests[0].url.params
    assert params["from"] == since.isoformat() and params["model"] == "kling-v3-motion-control"
    assert params["status"] == "completed"
    assert got.complete and got.pages == 1 and got.problem == ""
    first, second = got.events
    assert first.cost_usd == 0.7 and first.output_urls == [CDN] and first.job_id == "job-1"
    assert second.cost_usd == 0.14 and second.created_at == datetime(2025, 1, 1, 10, tzinfo=UTC)


SINCE = datetime(2025, 1, 1, tzinfo=UTC)


def event(n: int, **extra: Any) -> dict[str, Any]:
    return {"id": f"use_{n}", "cost": {"amount": 0.7}, "model": "m", "status": "completed", **extra}


def pages_of(events: list[dict[str, Any]], size: int, *, cursor: bool) -> Handler:
    """A usage endpoint paging ``events`` by ``before`` (an event id or an opaque cursor)."""
    cursors = {f"cur-{i}": i for i in range(0, len(events), size)}

    def handler(request: httpx.Request) -> httpx.Response:
        before = request.url.params.get("before")
        start = 0
        if before is not None:
            ids = [e["id"] for e in events]
            start = cursors[before] if cursor else ids.index(before) + 1
        page = events[start : start + size]
        more = start + size < len(events)
        body: dict[str, Any] = {"data": page, "has_more": more}
        if cursor:
            body["next_cursor"] = f"cur-{start + size}" if more else None
        return httpx.Response(200, json=body)

    return handler


@pytest.mark.parametrize("cursor", [True, False])
def test_usage_follows_has_more_to_the_last_page(cursor: bool) -> None:
    events = [event(n) for n in range(250)]
    h = Harness(pages_of(events, 7, cursor=cursor))
    got = h.call(lambda c: c.usage(SINCE))
    assert got.complete and got.pages == 36 and got.problem == ""
    assert [e.event_id for e in got.events] == [e["id"] for e in events]
    befores = [r.url.params.get("before") for r in h.requests]
    assert befores[0] is None and len(set(befores)) == 36  # never the same page twice
    assert all(r.url.params["from"] == SINCE.isoformat() for r in h.requests)


def test_usage_past_the_page_budget_is_partial_and_says_so() -> None:
    h = Harness(pages_of([event(n) for n in range(50)], 5, cursor=True))
    got = h.call(lambda c: c.usage(SINCE, max_pages=3))
    assert not got.complete and got.pages == 3 and len(got.events) == 15
    assert "page budget" in got.problem and len(h.requests) == 3


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"data": [], "has_more": True}, "no next_cursor"),
        ({"data": [event(1) | {"id": None}], "has_more": True}, "no next_cursor"),
        ({"data": [event(1)], "has_more": True, "next_cursor": "same"}, "repeats a cursor"),
    ],
)
def test_usage_that_cannot_go_on_is_partial(body: dict[str, Any], why: str) -> None:
    h = Harness(sequence(httpx.Response(200, json=body)))
    got = h.call(lambda c: c.usage(SINCE))
    assert not got.complete and why in got.problem and got.pages == len(h.requests) <= 2


def test_usage_failing_after_the_first_page_is_partial_not_an_error() -> None:
    first = {"data": [event(1)], "has_more": True, "next_cursor": "c2"}
    refused = {"error": {"message": f"no {KEY}", "code": "forbidden"}}
    h = Harness(sequence(httpx.Response(200, json=first), httpx.Response(403, json=refused)))
    got = h.call(lambda c: c.usage(SINCE))
    assert not got.complete and got.pages == 1 and len(got.events) == 1
    assert "page 2 could not be read" in got.problem and "HTTP 403" in got.problem
    assert KEY not in got.problem and "TOPSECRET" not in got.problem


def test_usage_failing_on_the_first_page_raises() -> None:
    h = Harness(sequence(httpx.Response(403, json={"error": {"message": "nope"}})))
    with pytest.raises(ProviderError, match="HTTP 403"):
        h.call(lambda c: c.usage(SINCE))


@pytest.mark.parametrize(
    ("more", "cursor", "pages"),
    [
        ("true", "c2", 2),
        ("false", "c2", 1),
        (None, "c2", 2),
        (None, None, 1),
        (False, "c2", 1),
        (1, "c2", 2),
        ("yes", "c2", 2),
        ({"odd": 1}, "c2", 2),
        (0.0, "c2", 1),
    ],
)
def test_has_more_is_read_tolerantly(more: object, cursor: str | None, pages: int) -> None:
    first: dict[str, Any] = {"data": [event(1)]}
    if more is not None:
        first["has_more"] = more
    if cursor is not None:
        first["next_cursor"] = cursor
    h = Harness(sequence(httpx.Response(200, json=first), httpx.Response(200, json={"data": []})))
    got = h.call(lambda c: c.usage(SINCE))
    assert got.complete and got.pages == pages


@pytest.mark.parametrize(
    ("mode", "read"),
    [
        ("pro", "pro"),
        ("1080p", "1080p"),
        ("professional", "professional"),
        (None, None),
        ({"tier": "pro"}, None),
        (True, None),
        ("", None),
        (720, "720"),
    ],
)
def test_usage_mode_is_undocumented_and_read_tolerantly(mode: object, read: str | None) -> None:
    h = Harness(sequence(httpx.Response(200, json={"data": [event(1, mode=mode)]})))
    (got,) = h.call(lambda c: c.usage(SINCE, model="m")).events
    assert got.mode == read and got.cost_usd == 0.7
    assert "mode" not in h.requests[0].url.params  # never a filter


def test_usage_pages_through_the_fake_server_over_loopback() -> None:
    config = FakeConfig(
        api_key=KEY, time_scale=0.01, fetch_references=False, render=False, queue_seconds=1
    )

    async def scenario(base: str) -> Any:
        async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
            client = EmpirioLabsClient(http, api_key=KEY, base_url=base)
            for n in range(3):
                await client.submit(BODY, idempotency_key=f"idem-{n}")
            return await client.usage(datetime.now(UTC) - timedelta(hours=1), limit=1)

    with FakeEmpirioLabs(config) as fake:
        got = asyncio.run(scenario(fake.url))
    assert got.complete and len(got.events) == 3 and got.pages in {3, 4}
    assert len({e.event_id for e in got.events}) == 3


def test_every_api_request_takes_a_limiter_slot_but_downloads_do_not(tmp_path: Path) -> None:
    h = Harness(sequence(done()))
    limiter = RateLimiter(2, clock=h.clock, sleep=h.sleep)

    async def scenario(client: EmpirioLabsClient) -> None:
        await client.poll("job-1")
        await client.download(CDN, tmp_path / "v", max_bytes=10**6)
        await client.poll("job-1")
        assert h.sleeps == []
        await client.poll("job-1")  # third API call in a minute: waits for the window

    h.call(scenario, limiter=limiter)
    assert h.sleeps == [pytest.approx(60.0)]


def test_parse_error_shapes() -> None:
    openai = parse_error(400, "Bad", b'{"error": {"message": "m", "code": "c", "param": "p"}}')
    assert (openai.message, openai.code, openai.param) == ("m", "c", "p")
    anthropic = parse_error(
        529, "", b'{"type": "error", "error": {"type": "overloaded", "message": "m"}}'
    )
    assert (anthropic.message, anthropic.code) == ("m", "overloaded")
    flat = parse_error(402, "", b'{"error": "insufficient_credits", "message": "m"}')
    assert (flat.message, flat.code) == ("m", "insufficient_credits")
    assert parse_error(502, "Bad Gateway", b"").message == "HTTP 502 Bad Gateway"
    assert "[redacted]" in parse_error(500, "", b"Bearer sk-abcdefgh oops").message
    assert parse_error(500, "", b'"just a string"').message.startswith("HTTP 500")


def test_parse_retry_after() -> None:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    assert parse_retry_after("2", now=now) == 2.0
    assert parse_retry_after("Wed, 01 Jan 2025 00:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("soon", now=now) is None and parse_retry_after(None) is None


@pytest.mark.parametrize(
    "change",
    [
        {"prompt": " "},
        {"prompt": "x" * 2501},
        {"mode": "ultra"},
        {"character_orientation": "side"},
        {"duration": 11},
        {"duration": 0.5},
        {"reference_image": "/local/file.png"},
    ],
)
def test_submit_request_is_checked_before_any_spend(change: dict[str, Any]) -> None:
    fields = {**BODY.to_json(), **change}
    with pytest.raises(UsageError):
        SubmitRequest(**fields)
    assert SubmitRequest(**{**BODY.to_json(), "character_orientation": "video", "duration": 30})
