"""The fake EmpirioLabs server speaks the API of docs/api.md over real loopback HTTP, faults included."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import ASSETS

from motionflow.fakeapi import FakeConfig, FakeEmpirioLabs, Faults, StatusWords
from motionflow.fakeapi.placeholder import placeholder_video
from motionflow.media.probe import probe

KEY = "sk-empiriolabs-test-SECRET-4242"
AUTH = {"Authorization": f"Bearer {KEY}"}
SUBMIT = "/v1/videos/generations"
BODY: dict[str, Any] = {
    "model": "kling-v3-motion-control",
    "prompt": "A dancer.",
    "reference_image": "https://cdn.example/hero.png",
    "reference_video": "https://cdn.example/dance.mp4",
    "character_orientation": "video",
    "mode": "std",
    "duration": 3,
    "keep_original_sound": True,
}


def fast(**overrides: Any) -> FakeConfig:
    """Queue 0.1 s, processing 0.1 s, no fetching, no rendering."""
    settings: dict[str, Any] = {
        "api_key": KEY,
        "time_scale": 0.01,
        "queue_seconds": 10,
        "processing_seconds": 10,
        "fetch_references": False,
        "render": False,
    }
    return FakeConfig(**{**settings, **overrides})


@pytest.fixture
def serve() -> Iterator[Callable[..., tuple[FakeEmpirioLabs, httpx.Client]]]:
    opened: list[tuple[FakeEmpirioLabs, httpx.Client]] = []

    def start(
        config: FakeConfig | None = None, **overrides: Any
    ) -> tuple[FakeEmpirioLabs, httpx.Client]:
        fake = FakeEmpirioLabs(config or fast(**overrides))
        client = httpx.Client(base_url=fake.start(), headers=AUTH, timeout=10, trust_env=False)
        opened.append((fake, client))
        return fake, client

    yield start
    for fake, client in opened:
        client.close()
        fake.stop()


def wait_for(
    client: httpx.Client, job_id: str, *, until: set[str], timeout: float = 10
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in until or time.monotonic() > deadline:
            return job
        time.sleep(0.01)


def submit(client: httpx.Client, **changes: Any) -> httpx.Response:
    return client.post(SUBMIT, json={**BODY, **changes})


def test_auth_errors_never_echo_the_key(serve: Any) -> None:
    fake, _ = serve()
    wrong = "sk-empiriolabs-WRONG-9999"
    missing = httpx.post(f"{fake.url}{SUBMIT}", json=BODY)
    bad = httpx.post(f"{fake.url}{SUBMIT}", json=BODY, headers={"Authorization": f"Bearer {wrong}"})
    assert (missing.status_code, missing.json()["error"]["code"]) == (401, "missing_api_key")
    assert (bad.status_code, bad.json()["error"]["code"]) == (401, "invalid_api_key")
    for response in (missing, bad):
        text = response.text + str(response.headers)
        assert KEY not in text and wrong not in text and "WRONG" not in text
    via_header = httpx.get(
        f"{fake.url}/v1/models/kling-v3-motion-control", headers={"x-api-key": KEY}
    )
    assert via_header.status_code == 200
    assert fake.submissions == []


@pytest.mark.parametrize(
    ("changes", "param", "status"),
    [
        ({"model": None}, "model", 422),
        ({"model": "kling-v9"}, "model", 404),
        ({"prompt": ""}, "prompt", 422),
        ({"prompt": "x" * 2501}, "prompt", 422),
        ({"reference_image": "file:///etc/passwd"}, "reference_image", 422),
        ({"reference_video": "not a url"}, "reference_video", 422),
        ({"character_orientation": "sideways"}, "character_orientation", 422),
        ({"mode": "ultra"}, "mode", 422),
        ({"duration": 0}, "duration", 422),
        ({"duration": 31}, "duration", 422),
        ({"duration": 11, "character_orientation": "image"}, "duration", 422),
        ({"duration": True}, "duration", 422),
        ({"keep_original_sound": "yes"}, "keep_original_sound", 422),
        ({"seed": 3}, "seed", 422),
    ],
)
def test_validation_errors_name_the_param(
    serve: Any, changes: dict[str, Any], param: str, status: int
) -> None:
    fake, client = serve()
    body = {k: v for k, v in {**BODY, **changes}.items() if v is not None}
    response = client.post(SUBMIT, json=body)
    assert response.status_code == status
    assert response.json()["error"]["param"] == param
    assert fake.submissions == []


def test_defaults_and_non_json_body(serve: Any) -> None:
    _, client = serve()
    minimal = {k: BODY[k] for k in ("model", "prompt", "reference_image", "reference_video")}
    assert client.post(SUBMIT, json=minimal).status_code == 200  # duration 5, orientation image
    garbage = client.post(SUBMIT, content=b"{nope", headers={"Content-Type": "application/json"})
    assert garbage.status_code == 400 and garbage.json()["error"]["code"] == "invalid_json"


def test_job_goes_queued_processing_completed(serve: Any) -> None:
    fake, client = serve(time_scale=0.02)
    accepted = submit(client, duration=2.5)
    assert accepted.status_code == 200
    created = accepted.json()
    assert (
        created["status"] == "queued"
        and created["poll_url"] == f"{fake.url}/v1/jobs/{created['job_id']}"
    )
    seen: list[str] = []
    progress: list[float] = []
    while not seen or seen[-1] != "completed":
        job = client.get(f"/v1/jobs/{created['job_id']}").json()
        if not seen or seen[-1] != job["status"]:
            seen.append(job["status"])
        progress.append(job["progress"])
        time.sleep(0.01)
    assert seen == ["queued", "processing", "completed"]
    assert all(0 <= p <= 1 for p in progress) and progress == sorted(progress)
    assert job["completed_at"] and job["error"] is None
    assert job["result"]["usage"]["billable_seconds"] == 3.0  # ceil(2.5), no reference probed


def test_status_words_are_configurable(serve: Any) -> None:
    words = StatusWords(
        queued="pending", processing="running", completed="succeeded", failed="error"
    )
    _, client = serve(status_words=words, faults=Faults(fail_jobs=1))
    first = submit(client).json()
    assert first["status"] == "pending"
    assert (
        wait_for(client, first["job_id"], until={"error"})["error"]["code"] == "generation_failed"
    )
    second = submit(client).json()["job_id"]
    assert wait_for(client, second, until={"succeeded"})["status"] == "succeeded"


SHAPES: dict[str, Callable[[dict[str, Any]], str]] = {
    "data": lambda r: r["data"][0]["url"],
    "output_urls": lambda r: r["output_urls"][0],
    "urls": lambda r: r["urls"][0],
    "video.url": lambda r: r["video"]["url"],
    "video_url": lambda r: r["video_url"],
    "url": lambda r: r["url"],
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_result_url_shapes_and_download_without_auth(serve: Any, shape: str) -> None:
    fake, client = serve(result_shape=shape)
    job_id = submit(client).json()["job_id"]
    job = wait_for(client, job_id, until={"completed"})
    url = SHAPES[shape](job["result"])
    assert url.startswith(f"{fake.url}/files/") and "Signature=" in url
    download = httpx.get(url)  # no Authorization, like a CDN
    assert download.status_code == 200 and download.content == placeholder_video()


def test_job_is_gone_after_retention(serve: Any) -> None:
    fake, client = serve(retention_seconds=20)
    job_id = submit(client).json()["job_id"]
    assert wait_for(client, job_id, until={"completed"})["status"] == "completed"
    fake.advance(25)
    gone = client.get(f"/v1/jobs/{job_id}")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "job_not_found"
    assert client.get("/v1/jobs/job_nope").status_code == 404


def test_usage_events_carry_the_charged_cost(serve: Any) -> None:
    _, client = serve(usage_job_ids=True)  # the real usage API names no job: see test_fake_untruths
    std = submit(client, duration=3).json()["job_id"]
    pro = submit(client, mode="pro", duration=4).json()["job_id"]
    wait_for(client, pro, until={"completed"})
    wait_for(client, std, until={"completed"})
    usage = client.get("/v1/account/usage").json()
    by_job = {e["job_id"]: e for e in usage["data"]}
    assert by_job[std]["cost"] == {"amount": 0.42, "currency": "USD"}
    assert by_job[pro]["cost"]["amount"] == 0.72
    assert (
        by_job[pro]["model"] == "kling-v3-motion-control" and by_job[pro]["status"] == "completed"
    )
    assert by_job[pro]["output_urls"] and by_job[pro]["created_at"].endswith("Z")
    assert usage["balance"]["amount"] == pytest.approx(100 - 0.42 - 0.72)
    assert [e["job_id"] for e in usage["data"]] == [pro, std]  # newest first
    limited = client.get("/v1/account/usage", params={"limit": 1}).json()
    assert len(limited["data"]) == 1 and limited["has_more"] is True
    assert client.get("/v1/account/usage", params={"status": "failed"}).json()["data"] == []
    assert (
        client.get("/v1/account/usage", params={"from": "2999-01-01T00:00:00Z"}).json()["data"]
        == []
    )
    bad = client.get("/v1/account/usage", params={"limit": "lots"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "limit"


def test_model_catalog_and_unknown_model(serve: Any) -> None:
    _, client = serve()
    entry = client.get("/v1/models/kling-v3-motion-control").json()
    assert {r["mode"]: r["price"] for r in entry["pricing_rows"]} == {"std": 0.14, "pro": 0.18}
    assert "duration" in {p["name"] for p in entry["supported_parameters"]}
    missing = client.get("/v1/models/kling-v2")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"


def test_rate_limit_sends_429_with_retry_after(serve: Any) -> None:
    fake, client = serve(rate_limit_per_minute=3, time_scale=0.01)  # a 0.6 s window
    statuses = [client.get("/v1/account/usage").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    assert fake.rate_limited == 1
    limited = client.get("/v1/account/usage")
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    retry_after = float(limited.headers["Retry-After"])
    assert 0 < retry_after <= 0.6
    time.sleep(retry_after + 0.01)
    assert client.get("/v1/account/usage").status_code == 200
    assert fake.rate_limited == 2
    assert fake.requests["GET", "/v1/account/usage"] == 6


def test_rate_limit_burst_and_server_errors_are_scoped(serve: Any) -> None:
    fake, client = serve(
        faults=Faults(
            rate_limit_burst=1,
            retry_after_seconds=2,
            server_errors=2,
            server_error_methods=frozenset({"GET"}),
            server_error_paths=frozenset({"/v1/jobs/{job_id}"}),
        )
    )
    burst = submit(client)
    assert burst.status_code == 429 and burst.headers["Retry-After"] == "0.020"
    job_id = submit(client).json()["job_id"]  # POST is out of the 5xx scope
    first, second = client.get(f"/v1/jobs/{job_id}"), client.get(f"/v1/jobs/{job_id}")
    assert (first.status_code, first.json()["error"]["code"]) == (503, "model_unavailable")
    assert second.status_code == 503 and client.get(f"/v1/jobs/{job_id}").status_code == 200
    assert fake.rate_limited == 1 and len(fake.submissions) == 1
    fake.arm(server_errors=1, server_error_status=502)
    assert client.get(f"/v1/jobs/{job_id}").json()["error"]["code"] == "upstream_error"


def test_reset_after_read_accepts_and_bills_the_job(serve: Any) -> None:
    fake, client = serve(faults=Faults(reset_after_read=1))
    with pytest.raises(httpx.TransportError):
        client.post(SUBMIT, json=BODY, headers={"Idempotency-Key": "take-1"})
    assert fake.submits_by_key == {"take-1": 1}
    assert len(fake.submissions) == 1
    usage = client.get("/v1/account/usage").json()["data"]
    assert len(usage) == 1 and usage[0]["cost"]["amount"] == 0.42  # charged, unseen by the client
    # No idempotency: the same key submitted again is a second, billed job.
    assert client.post(SUBMIT, json=BODY, headers={"Idempotency-Key": "take-1"}).status_code == 200
    assert fake.submits_by_key == {"take-1": 2}


def test_idempotency_key_can_be_honoured(serve: Any) -> None:
    fake, client = serve(honour_idempotency_key=True, faults=Faults(reset_after_read=1))
    with pytest.raises(httpx.TransportError):
        client.post(SUBMIT, json=BODY, headers={"Idempotency-Key": "k"})
    again = client.post(SUBMIT, json=BODY, headers={"Idempotency-Key": "k"})
    assert again.json()["job_id"] == fake.job_ids()[0] and len(fake.submissions) == 1


@pytest.mark.parametrize("style", ["truncated", "garbage"])
def test_lost_response_is_a_transport_error_after_acceptance(serve: Any, style: Any) -> None:
    fake, client = serve(faults=Faults(lost_response=1, lost_response_style=style))
    with pytest.raises(httpx.TransportError):
        submit(client)
    assert len(fake.submissions) == 1
    assert submit(client).status_code == 200


def test_slow_response_times_out_after_acceptance(serve: Any) -> None:
    fake, client = serve(faults=Faults(slow_seconds=30, slow_methods=frozenset({"POST"})))
    with pytest.raises(httpx.ReadTimeout):
        client.post(SUBMIT, json=BODY, timeout=0.1)
    assert len(fake.submissions) == 1
    assert client.get("/v1/account/usage").status_code == 200  # GETs are not slowed


def test_malformed_json_on_a_poll(serve: Any) -> None:
    _, client = serve(faults=Faults(malformed_json=1))
    job_id = submit(client).json()["job_id"]
    broken = client.get(f"/v1/jobs/{job_id}")
    assert broken.status_code == 200
    with pytest.raises(ValueError):
        broken.json()
    assert client.get(f"/v1/jobs/{job_id}").json()["job_id"] == job_id


def test_failed_and_expired_jobs(serve: Any) -> None:
    _, client = serve(faults=Faults(fail_jobs=1, expire_after_complete=True))
    failed = submit(client).json()["job_id"]
    job = wait_for(client, failed, until={"failed"})
    assert job["error"]["code"] == "generation_failed" and job["result"] is None
    done = submit(client).json()["job_id"]
    deadline = time.monotonic() + 5
    while (
        response := client.get(f"/v1/jobs/{done}")
    ).status_code == 200 and time.monotonic() < deadline:
        assert response.json()["status"] != "completed"
        time.sleep(0.01)
    assert response.status_code == 404


def test_insufficient_credits_after_n_submits(serve: Any) -> None:
    fake, client = serve(faults=Faults(insufficient_credits_after=1))
    assert submit(client).status_code == 200
    refused = submit(client)
    assert refused.status_code == 402 and refused.json()["error"]["code"] == "insufficient_credits"
    assert len(fake.submissions) == 1


def test_seeded_flaky_errors_replay() -> None:
    def run() -> list[int]:
        faults = Faults(flaky_rate=0.5, seed=7, server_error_paths=frozenset({"/v1/account/usage"}))
        with FakeEmpirioLabs(fast(faults=faults)) as fake, httpx.Client(headers=AUTH) as client:
            return [client.get(f"{fake.url}/v1/account/usage").status_code for _ in range(12)]

    first = run()
    assert first == run() and {200, 503} == set(first)
    with pytest.raises(ValueError, match="seed"):
        Faults(flaky_rate=0.5)


@pytest.mark.parametrize(
    ("style", "read"),
    [
        ("openai", lambda b: (b["error"]["code"], b["error"]["message"])),
        (
            "anthropic",
            lambda b: (b["error"]["type"], b["error"]["message"]) if b["type"] == "error" else None,
        ),
        ("flat", lambda b: (b["error"], b["message"])),
    ],
)
def test_error_envelopes(serve: Any, style: Any, read: Callable[[dict[str, Any]], Any]) -> None:
    fake, _ = serve(faults=Faults(error_style=style))
    response = httpx.get(f"{fake.url}/v1/account/usage")
    code, message = read(response.json())
    assert response.status_code == 401 and code == "missing_api_key" and "key" in message


def upload(client: httpx.Client, path: Path) -> dict[str, Any]:
    response = client.post("/v1/files/upload", files={"file": (path.name, path.read_bytes())})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_upload_then_fetch_references(serve: Any) -> None:
    fake, client = serve(fetch_references=True)
    image, video = upload(client, ASSETS / "hero.png"), upload(client, ASSETS / "dance.mp4")
    assert (
        image["path"].endswith("hero.png")
        and image["bytes"] == (ASSETS / "hero.png").stat().st_size
    )
    assert httpx.get(video["url"]).content == (ASSETS / "dance.mp4").read_bytes()
    job_id = submit(
        client, reference_image=image["url"], reference_video=video["url"], duration=10
    ).json()["job_id"]
    job = wait_for(client, job_id, until={"completed", "failed"})
    assert job["status"] == "completed"
    assert job["result"]["usage"]["billable_seconds"] == 4.0  # the 4 s reference, not 10
    broken = submit(
        client, reference_image=image["url"], reference_video=f"{fake.url}/files/missing.mp4"
    )
    job = wait_for(client, broken.json()["job_id"], until={"completed", "failed"})
    assert job["status"] == "failed" and job["error"]["code"] == "reference_fetch_failed"
    assert "reference_video" in job["error"]["message"] and "404" in job["error"]["message"]
    # Only the test's own download counts: the server's fetches of its files are internal.
    assert fake.requests["GET", "/files/{name}"] == 1
    empty = client.post("/v1/files/upload", data={"note": "no file"})
    assert empty.status_code == 400 and empty.json()["error"]["param"] == "file"


@pytest.mark.slow
def test_renders_a_real_std_video(serve: Any, tmp_path: Path) -> None:
    _, client = serve(fetch_references=True, render=True)
    image, video = upload(client, ASSETS / "hero.png"), upload(client, ASSETS / "dance.mp4")
    job_id = submit(
        client, reference_image=image["url"], reference_video=video["url"], duration=1
    ).json()["job_id"]
    job = wait_for(client, job_id, until={"completed", "failed"}, timeout=60)
    assert job["status"] == "completed", job["error"]
    out = tmp_path / "out.mp4"
    out.write_bytes(httpx.get(job["result"]["data"][0]["url"]).content)
    info = probe(out)
    assert (info.width, info.height, info.video_codec) == (1280, 720, "h264")
    assert info.duration == pytest.approx(1.0, abs=0.1) and info.has_audio
