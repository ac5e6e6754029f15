"""A wrong ``EMPIRIOLABS_BASE_URL``: a refused port or a host that does not resolve.

The run must fail in seconds (a couple of quick retries, not minutes of backoff), name the URL,
say the instance once, exit 2 (a setting to fix) and leave no journal record: a connection that
was refused or whose name did not resolve never reached the service, so nothing is in doubt.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import subprocess

import httpx
import pytest
from service import Service

from motionflow.providers.empiriolabs import (
    EmpirioLabsClient,
    ServiceUnreachable,
    SubmitInDoubt,
    SubmitRequest,
)

OUTFITS = ["red jacket", "white hoodie"]
KEY = "sk-empiriolabs-TOPSECRET0123456789"
BODY = SubmitRequest(
    model="kling-v3-motion-control",
    prompt="A dancer spins.",
    reference_image="https://x.test/a.png",
    reference_video="https://x.test/m.mp4",
)


def _closed_port_url() -> str:
    with socket.socket() as sock:  # bound, then closed: nobody listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _run(service: Service, base_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    # the timeout only guards against a hang; the run is expected to end in seconds
    return subprocess.run(
        service.command("run", "paid.yaml", *args),
        cwd=service.root,
        env=service.full_env({"EMPIRIOLABS_BASE_URL": base_url, "EMPIRIOLABS_POLL_SECONDS": "5"}),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("base_url", "cause"),
    [(None, "connection was refused"), ("http://motionflow-test.invalid", "does not resolve")],
    ids=["refused", "dns"],
)
@pytest.mark.slow
def test_unreachable_base_url_fails_naming_it(
    service: Service, base_url: str | None, cause: str
) -> None:
    url = base_url or _closed_port_url()
    service.recipe(OUTFITS)
    proc = _run(service, url)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    failures = [line for line in proc.stdout.splitlines() if line.startswith("✗ ")]
    assert len(failures) == 2, proc.stdout
    for line in failures:
        assert repr(url) in line and "EMPIRIOLABS_BASE_URL" in line, line
        assert "nothing was charged" in line
        label = line.split()[1].rstrip(":")
        assert line.count(label) == 1, line  # the instance is named once
    assert any(cause in line for line in failures), failures
    assert service.fake.submissions == []
    assert service.jobs() == []  # no record at all, and so none in doubt


@pytest.mark.slow
def test_unreachable_base_url_in_json(service: Service) -> None:
    url = _closed_port_url()
    service.recipe(OUTFITS)
    proc = _run(service, url, "--json")
    assert proc.returncode == 2, proc.stderr
    result = json.loads(proc.stdout)
    assert result["exit_code"] == 2 and result["jobs_in_doubt"] == 0
    assert result["failed"] == result["failed_on_input"] == 2
    for failure in result["failures"]:
        assert repr(url) in failure["error"]
        assert failure["instance"] not in failure["error"]
    assert service.jobs() == []


# -- the client ---------------------------------------------------------------------------------


def _client_run(
    handler: object, call: str, **kwargs: object
) -> tuple[object, list[str], list[float]]:
    """Run ``submit`` or ``poll`` against a MockTransport: the result, requests and sleeps."""
    seen: list[str] = []
    sleeps: list[float] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request.method)
        return handler(request)  # type: ignore[operator, no-any-return]

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async def main() -> object:
        async with httpx.AsyncClient(transport=httpx.MockTransport(record)) as http:
            client = EmpirioLabsClient(
                http,
                api_key=KEY,
                base_url="https://api.test",
                sleep=sleep,
                rng=random.Random(3),
                **kwargs,  # type: ignore[arg-type]
            )
            if call == "submit":
                return await client.submit(BODY, idempotency_key="mf-x-0")
            await client.poll("job-1")  # the host answers once: it is reachable
            return await client.poll("job-1")

    try:
        result: object = asyncio.run(main())
    except Exception as exc:  # returned for the test to look at
        result = exc
    return result, seen, sleeps


def test_a_refused_submit_gives_up_after_three_quick_tries_without_doubt() -> None:
    def refuse(_request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused")

    result, seen, sleeps = _client_run(refuse, "submit", max_attempts=5)
    assert isinstance(result, ServiceUnreachable) and not isinstance(result, SubmitInDoubt)
    assert result.exit_code == 2
    assert "'https://api.test'" in str(result) and "nothing was charged" in str(result)
    assert KEY not in str(result)
    assert seen == ["POST"] * 3
    assert len(sleeps) == 2 and all(s <= 1.0 for s in sleeps)  # quick retries, no backoff


def test_once_the_host_answered_a_failed_connection_is_retried_as_usual() -> None:
    answers = iter(
        [httpx.Response(200, json={"job_id": "job-1", "status": "processing"})]
        + [httpx.ConnectError("refused")] * 4
        + [httpx.Response(200, json={"job_id": "job-1", "status": "processing"})]
    )

    def handler(_request: httpx.Request) -> httpx.Response:
        step = next(answers)
        if isinstance(step, Exception):
            raise step
        return step

    result, seen, _ = _client_run(handler, "poll", max_attempts=5)
    assert not isinstance(result, Exception), result
    assert seen == ["GET"] * 6  # a blip during a long run does not end it
