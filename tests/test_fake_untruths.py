"""The fake server tells the untruths of a real, shared, imperfect account, when asked to.

Every test talks to it over loopback HTTP and asserts what a client sees; ``fake.charges()``
is the truth the usage endpoint only half tells.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from motionflow.fakeapi import FakeConfig, FakeEmpirioLabs, Faults
from motionflow.fakeapi.placeholder import placeholder_video

KEY = "sk-empiriolabs-UNTRUTH-5150"
AUTH = {"Authorization": f"Bearer {KEY}"}
SUBMIT = "/v1/videos/generations"
USAGE = "/v1/account/usage"
BODY: dict[str, Any] = {
    "model": "kling-v3-motion-control",
    "prompt": "A dancer in a red jacket.",
    "reference_image": "https://cdn.example/hero.png",
    "reference_video": "https://cdn.example/dance.mp4",
    "character_orientation": "video",
    "mode": "std",
    "duration": 3,
}
Serve = Callable[..., tuple[FakeEmpirioLabs, httpx.Client]]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    """Start a fast fake (0.1 s queued, 0.1 s processing, no fetching, no video) and a client."""
    opened: list[tuple[FakeEmpirioLabs, httpx.Client]] = []

    def start(**overrides: Any) -> tuple[FakeEmpirioLabs, httpx.Client]:
        settings: dict[str, Any] = {
            "api_key": KEY,
            "time_scale": 0.02,
            "queue_seconds": 5,
            "processing_seconds": 5,
            "fetch_references": False,
            "render": False,
            "store_dir": tmp_path / f"fake{len(opened)}",
        }
        fake = FakeEmpirioLabs(FakeConfig(**{**settings, **overrides}))
        client = httpx.Client(base_url=fake.start(), headers=AUTH, timeout=10, trust_env=False)
        opened.append((fake, client))
        return fake, client

    yield start
    for fake, client in opened:
        client.close()
        fake.stop()


def submit(client: httpx.Client, key: str | None = None, **changes: Any) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key else {}
    return client.post(SUBMIT, json={**BODY, **changes}, headers=headers)


def wait_for(client: httpx.Client, job_id: str, timeout: float = 10) -> dict[str, Any]:
    """Poll until the job completes or fails."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(f"/v1/jobs/{job_id}")
        job: dict[str, Any] = response.json() if response.status_code == 200 else {}
        if job.get("status") in {"completed", "failed"} or time.monotonic() > deadline:
            return job
        time.sleep(0.01)


def until(check: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def events(client: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    """Every usage event, following ``next_cursor`` while ``has_more``."""
    found: list[dict[str, Any]] = []
    while True:
        page = client.get(USAGE, params=params).json()
        found += page["data"]
        if not page["has_more"]:
            return found
        assert page["next_cursor"] == page["data"][-1]["id"]
        params = {**params, "before": page["next_cursor"]}


def parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)


# -- 1, 2: usage events name no job; pages are cut ---------------------------------------------
def test_usage_events_name_no_job_and_no_request_params(serve: Serve) -> None:
    fake, client = serve()
    job_id = submit(client, key="take-1").json()["job_id"]
    job = wait_for(client, job_id)
    (event,) = client.get(USAGE).json()["data"]
    assert "job_id" not in event and "prompt" not in event and "request" not in event
    text = json.dumps(event)
    hex_part = job_id.removeprefix("job_")
    assert hex_part not in text and "take-1" not in text  # not in the id, not in the output URL
    assert BODY["prompt"] not in text and "cdn.example" not in text
    assert event["cost"] == {"amount": 0.42, "currency": "USD"}
    assert event["output_urls"] == [job["result"]["data"][0]["url"]]
    assert event["model"] == "kling-v3-motion-control" and event["mode"] == "std"
    fake.arm(usage_job_ids=True)  # old tests may still ask for it
    assert client.get(USAGE).json()["data"][0]["job_id"] == job_id


def test_usage_pages_follow_the_cursor_newest_first(serve: Serve) -> None:
    fake, client = serve()
    ids = [submit(client).json()["job_id"] for _ in range(5)]
    first = client.get(USAGE, params={"limit": 2}).json()
    assert len(first["data"]) == 2 and first["has_more"] is True
    assert first["next_cursor"] == first["data"][-1]["id"]
    pages, params = [first], {"limit": 2, "before": first["next_cursor"]}
    while pages[-1]["has_more"]:
        pages.append(client.get(USAGE, params=params).json())
        params["before"] = pages[-1]["next_cursor"]
    assert [len(p["data"]) for p in pages] == [2, 2, 1]
    listed = [e for p in pages for e in p["data"]]
    assert len({e["id"] for e in listed}) == 5
    stamps = [parse(e["created_at"]) for e in listed]
    assert stamps == sorted(stamps, reverse=True)
    truth = [c["created_at"] for c in fake.charges()]  # oldest first
    assert [e["created_at"] for e in listed] == truth[::-1]
    assert [c["job_id"] for c in fake.charges()] == ids
    # from/to are inclusive, on the timestamps as reported (two charges may share a stamp)
    middle = parse(listed[2]["created_at"])
    upto = [e["id"] for e in listed if parse(e["created_at"]) <= middle]
    since = [e["id"] for e in listed if parse(e["created_at"]) >= middle]
    assert [e["id"] for e in events(client, to=listed[2]["created_at"])] == upto
    assert [e["id"] for e in events(client, **{"from": listed[2]["created_at"]})] == since
    assert listed[2]["id"] in upto and listed[2]["id"] in since
    assert client.get(USAGE, params={"before": "use_unknown"}).json()["data"] == []


def test_usage_page_size_caps_every_page(serve: Serve) -> None:
    _, client = serve(usage_page_size=2)
    for _ in range(3):
        submit(client)
    page = client.get(USAGE, params={"limit": 100}).json()
    assert len(page["data"]) == 2 and page["has_more"] is True
    assert len(events(client, limit=100)) == 3


def test_usage_query_is_read_tolerantly_but_checked(serve: Serve) -> None:
    _, client = serve()
    submit(client)
    naive = (datetime.now(UTC) + timedelta(hours=1)).replace(tzinfo=None).isoformat()
    assert client.get(USAGE, params={"from": naive}).json()["data"] == []  # naive = UTC
    for name, value in (("limit", "²"), ("limit", "0"), ("from", "nan"), ("to", "yesterday")):
        bad = client.get(USAGE, params={name: value})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == name


# -- 3: late and duplicated effects --------------------------------------------------------------
def test_late_submit_answers_5xx_then_bills_a_real_job(serve: Serve) -> None:
    fake, client = serve(faults=Faults(late_submits=1, late_seconds=10))  # 0.2 s
    refused = submit(client, key="k")
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "model_unavailable"
    assert fake.job_ids() == [] and client.get(USAGE).json()["data"] == []
    until(lambda: len(fake.job_ids()) == 1)
    (job_id,) = fake.job_ids()
    job = wait_for(client, job_id)
    assert job["status"] == "completed"
    assert httpx.get(job["result"]["data"][0]["url"]).content == placeholder_video()
    assert len(client.get(USAGE).json()["data"]) == 1
    assert fake.submits_by_key == {"k": 1} and fake.billed_by_key() == {"k": 1}


def test_late_submit_and_a_retry_are_billed_twice_unless_the_key_is_honoured(
    serve: Serve,
) -> None:
    careless, client = serve(faults=Faults(late_submits=1, late_seconds=10))
    assert submit(client, key="k").status_code == 503
    assert submit(client, key="k").status_code == 200  # the retry: a second job
    until(lambda: len(careless.job_ids()) == 2)
    assert careless.billed_by_key() == {"k": 2} and len(events(client)) == 2

    honest, client = serve(faults=Faults(late_submits=1, late_seconds=10))
    honest.arm(honour_idempotency_key=True)
    assert submit(client, key="k").status_code == 503
    retried = submit(client, key="k").json()["job_id"]
    time.sleep(0.3)  # past the late job's moment: it found the key taken
    assert honest.job_ids() == [retried] and honest.billed_by_key() == {"k": 1}


@pytest.mark.parametrize(("status", "code"), [(503, "model_unavailable"), (502, "upstream_error")])
def test_created_then_5xx_bills_the_job_it_denies(serve: Serve, status: int, code: str) -> None:
    fake, client = serve(
        honour_idempotency_key=True,
        faults=Faults(created_then_5xx=1, server_error_status=status),
    )
    denied = submit(client, key="k")
    assert denied.status_code == status and denied.json()["error"]["code"] == code
    (job_id,) = fake.job_ids()
    assert wait_for(client, job_id)["status"] == "completed"
    assert len(client.get(USAGE).json()["data"]) == 1
    again = submit(client, key="k")
    assert again.status_code == 200 and again.json()["job_id"] == job_id
    assert fake.repeat_submits == 1 and fake.billed_by_key() == {"k": 1}


def test_billing_lags_behind_the_job(serve: Serve) -> None:
    fake, client = serve(billing_lag_seconds=600)
    job_id = submit(client).json()["job_id"]
    assert wait_for(client, job_id)["status"] == "completed"
    before = client.get(USAGE).json()
    assert before["data"] == [] and before["balance"]["amount"] == 100.0
    assert [c["job_id"] for c in fake.charges()] == [job_id]  # billed all the same
    fake.advance(600)
    after = client.get(USAGE).json()
    assert len(after["data"]) == 1 and after["balance"]["amount"] == pytest.approx(99.58)


# -- 4: clock skew --------------------------------------------------------------------------------
@pytest.mark.parametrize("skew", [36_000.0, -36_000.0])  # 720 s either way at this scale
def test_every_timestamp_is_on_the_services_clock(serve: Serve, skew: float) -> None:
    fake, client = serve(clock_skew_seconds=skew)
    ours = datetime.now(UTC)
    answer = submit(client).json()
    job = wait_for(client, answer["job_id"])
    (event,) = client.get(USAGE).json()["data"]
    shift = timedelta(seconds=skew * 0.02)
    assert abs(parse(answer["created_at"]) - (ours + shift)) < timedelta(seconds=5)
    assert answer["created_at"] == job["created_at"] == event["created_at"]
    assert job["completed_at"] == event["completed_at"]
    assert parse(job["completed_at"]) - parse(job["created_at"]) < timedelta(seconds=5)
    assert fake.charges()[0]["created_at"] == event["created_at"]
    # from/to are read on the service's clock: our own "now" misses or overshoots
    our_window = {"from": (ours - timedelta(seconds=5)).isoformat(), "to": ours.isoformat()}
    assert client.get(USAGE, params=our_window).json()["data"] == []
    service_window = {"from": event["created_at"], "to": event["created_at"]}
    assert len(client.get(USAGE, params=service_window).json()["data"]) == 1


# -- 5: strangers on the account -----------------------------------------------------------------
def test_a_strangers_job_is_billed_to_the_account(serve: Serve) -> None:
    fake, client = serve()
    ours = submit(client).json()["job_id"]
    theirs = fake.add_stranger_job(mode="pro", duration=4.0)
    assert fake.stranger_job_ids() == [theirs] and fake.job_ids() == [ours]
    assert len(fake.submissions) == 1 and sum(fake.submits_by_key.values()) == 1
    job = wait_for(client, theirs)
    assert job["status"] == "completed"
    assert httpx.get(job["result"]["data"][0]["url"]).content == placeholder_video()
    wait_for(client, ours)
    costs = sorted(e["cost"]["amount"] for e in client.get(USAGE).json()["data"])
    assert costs == [0.42, 0.72]
    owners = {c["job_id"]: (c["owner"], c["idempotency_key"]) for c in fake.charges()}
    assert owners == {ours: ("us", None), theirs: ("stranger", None)}
    with pytest.raises(ValueError, match="mode"):
        fake.add_stranger_job(mode="ultra")


def test_a_late_stranger_is_unknown_until_it_arrives(serve: Serve) -> None:
    fake, client = serve()
    later = fake.add_stranger_job(delay=10)  # 0.2 s
    assert client.get(f"/v1/jobs/{later}").status_code == 404
    until(lambda: fake.stranger_job_ids() == [later])
    assert client.get(f"/v1/jobs/{later}").status_code == 200


def test_strangers_submit_alongside_us(serve: Serve) -> None:
    fake, client = serve(strangers_per_submit=2)
    ours = submit(client, mode="pro").json()["job_id"]
    assert len(fake.stranger_job_ids()) == 2 and fake.job_ids() == [ours]
    wait_for(client, ours)
    for theirs in fake.stranger_job_ids():
        wait_for(client, theirs)
    listed = client.get(USAGE).json()["data"]
    assert len(listed) == 3
    assert {e["mode"] for e in listed} == {"pro"}
    assert len({e["cost"]["amount"] for e in listed}) == 1  # indistinguishable by cost
    stamps = [parse(e["created_at"]) for e in listed]
    assert max(stamps) - min(stamps) < timedelta(seconds=1)
    assert len({e["output_urls"][0] for e in listed}) == 3
    assert len(fake.submissions) == 1


# -- 6: mode spelling -----------------------------------------------------------------------------
def test_usage_spells_the_mode_its_own_way(serve: Serve) -> None:
    fake, client = serve(usage_mode_words={"std": "standard", "pro": "professional"})
    submit(client)
    submit(client, mode="pro")
    assert sorted(e["mode"] for e in client.get(USAGE).json()["data"]) == [
        "professional",
        "standard",
    ]
    fake.arm(usage_mode_words=None)
    assert sorted(e["mode"] for e in client.get(USAGE).json()["data"]) == ["pro", "std"]


# -- 7: transient 404s and a careless CDN ---------------------------------------------------------
def test_polls_answer_404_for_a_job_that_exists(serve: Serve) -> None:
    fake, client = serve(faults=Faults(poll_not_found=2))
    job_id = submit(client).json()["job_id"]
    assert client.get("/v1/jobs/job_nope").status_code == 404  # a true 404 takes no fault
    for _ in range(2):
        lost = client.get(f"/v1/jobs/{job_id}")
        assert lost.status_code == 404 and lost.json()["error"]["code"] == "job_not_found"
    assert client.get(f"/v1/jobs/{job_id}").status_code == 200
    assert fake.faults.poll_not_found == 0


def test_output_downloads_404_or_get_an_html_page(serve: Serve) -> None:
    fake, client = serve()
    url = wait_for(client, submit(client).json()["job_id"])["result"]["data"][0]["url"]
    fake.arm(file_not_found=1, file_error_page=1)
    missing = httpx.get(url)
    assert missing.status_code == 404
    page = httpx.get(url)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.content.startswith(b"<!DOCTYPE html>") and page.content != placeholder_video()
    assert httpx.get(url).content == placeholder_video()


# -- 8: an honoured Idempotency-Key --------------------------------------------------------------
def test_honoured_key_returns_the_same_job_and_bills_once(serve: Serve) -> None:
    fake, client = serve(honour_idempotency_key=True)
    answers = [submit(client, key="take-1").json()["job_id"] for _ in range(3)]
    assert len(set(answers)) == 1 and fake.job_ids() == answers[:1]
    assert fake.repeat_submits == 2
    assert fake.submits_by_key == {"take-1": 1} == fake.billed_by_key()
    assert len(client.get(USAGE).json()["data"]) == 1
    # no header: nothing to deduplicate by, so identical bodies are two jobs
    assert submit(client).json()["job_id"] != submit(client).json()["job_id"]
    assert len(fake.submissions) == 3 and fake.repeat_submits == 2


# -- 9: careless error envelopes -----------------------------------------------------------------
ODD_KEY = 'sk-empiriolabs-o"dd\\key-42'  # escaping changes it: repr and JSON differ from raw


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def _provoke(fake: FakeEmpirioLabs, client: httpx.Client) -> dict[int, httpx.Response]:
    job_id = submit(client).json()["job_id"]
    seen = {
        400: client.post(SUBMIT, content=b"{nope", headers={"Content-Type": "application/json"}),
        422: submit(client, prompt=""),
        404: client.get("/v1/jobs/job_nope"),
    }
    fake.arm(insufficient_credits_after=0)
    seen[402] = submit(client)
    fake.arm(server_errors=1, server_error_status=502)
    seen[502] = client.get(f"/v1/jobs/{job_id}")
    fake.arm(rate_limit_burst=1)
    seen[429] = client.get(USAGE)
    return seen


@pytest.mark.parametrize("style", ["openai", "anthropic", "flat"])
def test_errors_can_echo_the_key_into_every_field(serve: Serve, style: Any) -> None:
    fake, client = serve(api_key=ODD_KEY, faults=Faults(echo_key_in_errors=True, error_style=style))
    client.headers["Authorization"] = f"Bearer {ODD_KEY}"
    seen = _provoke(fake, client)
    seen[401] = httpx.get(f"{fake.url}{USAGE}", headers={"x-api-key": ODD_KEY + "-wrong"})
    for status, response in seen.items():
        assert response.status_code == status
        body = response.json()
        fields = _strings(body["error"]) + ([body["message"]] if style == "flat" else [])
        assert len(fields) >= 2
        echoed = ODD_KEY + "-wrong" if status == 401 else ODD_KEY
        variants = (echoed, repr(echoed), json.dumps(echoed))
        for text in fields:
            assert any(v in text for v in variants), (status, text)
        joined = "\n".join(fields)
        assert echoed in joined and repr(echoed) in joined and json.dumps(echoed) in joined
        if style == "openai":
            assert json.dumps(echoed) in body["error"]["type"]
        if style == "anthropic":
            assert body["type"] == "error"  # the discriminator stays parseable


def test_nothing_is_echoed_without_a_key_or_without_the_fault(serve: Serve) -> None:
    fake, client = serve(faults=Faults(echo_key_in_errors=True))
    missing = httpx.get(f"{fake.url}{USAGE}")
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "missing_api_key"
    fake.arm(echo_key_in_errors=False)
    for response in _provoke(fake, client).values():
        assert KEY not in response.text


# -- 10: the truth, and arming settings ----------------------------------------------------------
def test_charges_agree_with_what_usage_shows(serve: Serve) -> None:
    fake, client = serve(clock_skew_seconds=600, usage_mode_words={"std": "standard"})
    ours = submit(client, key="k1").json()["job_id"]
    theirs = fake.add_stranger_job(mode="pro", duration=2)
    wait_for(client, ours)
    wait_for(client, theirs)
    truth = fake.charges()
    assert [c["job_id"] for c in truth] == [ours, theirs]
    by_video = {e["output_urls"][0].split("?")[0]: e for e in client.get(USAGE).json()["data"]}
    for charge in truth:
        event = by_video[charge["output_url"]]
        assert event["created_at"] == charge["created_at"]
        assert event["cost"]["amount"] == charge["amount_usd"]
        assert event["output_urls"][0].split("?")[0] == charge["output_url"]
        assert "?" not in charge["output_url"]
        stamp = datetime.fromtimestamp(charge["created"], UTC)
        assert abs(stamp - parse(event["created_at"])) < timedelta(milliseconds=2)
    assert [(c["owner"], c["mode"], c["idempotency_key"]) for c in truth] == [
        ("us", "std", "k1"),
        ("stranger", "pro", None),
    ]
    assert fake.billed_by_key() == Counter({"k1": 1})


def test_failed_jobs_drop_out_of_the_charges_when_not_billed(serve: Serve) -> None:
    fake, client = serve(bill_failed_jobs=False, faults=Faults(fail_jobs=1))
    failed = submit(client, key="bad").json()["job_id"]
    done = submit(client, key="good").json()["job_id"]
    assert wait_for(client, failed)["status"] == "failed"
    wait_for(client, done)
    assert [c["job_id"] for c in fake.charges()] == [done]
    assert fake.billed_by_key() == {"good": 1}
    assert fake.submits_by_key == {"bad": 1, "good": 1}


def test_arm_changes_settings_or_refuses_them_whole(serve: Serve) -> None:
    fake, client = serve()
    fake.arm(usage_page_size=1, server_errors=0)
    submit(client)
    submit(client)
    assert len(client.get(USAGE).json()["data"]) == 1
    with pytest.raises(TypeError, match="port"):
        fake.arm(port=8080)
    with pytest.raises(ValueError, match="strangers_per_submit"):
        fake.arm(strangers_per_submit=-1, poll_not_found=3)
    assert fake.faults.poll_not_found == 0 and fake.config.strangers_per_submit == 0


def test_jobs_still_expire_after_retention(serve: Serve) -> None:
    fake, client = serve(retention_seconds=100, faults=Faults(created_then_5xx=1))
    submit(client)
    (job_id,) = fake.job_ids()
    assert wait_for(client, job_id)["status"] == "completed"
    fake.advance(150)
    assert client.get(f"/v1/jobs/{job_id}").status_code == 404
    assert len(client.get(USAGE).json()["data"]) == 1  # the charge stays
