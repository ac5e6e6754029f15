"""Never paid twice: SIGKILL at random moments, two processes at once, Ctrl-C detaching."""

from __future__ import annotations

import json
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from service import API_KEY, Service, make_service, new_project

from motionflow.cache.journal import JobRecord, Journal

OUTFITS = [
    "red jacket",
    "white hoodie",
    "blue coat",
    "green scarf",
    "black suit",
    "gold cape",
    "grey vest",
    "pink dress",
]


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    root, cache = new_project(tmp_path)
    # Jobs take ~1.5 s (queue 1 s + processing 2 s at a 0.5 time scale), two at a time, so a
    # sweep needs several runs' worth of time: kills land while jobs are submitted, queued,
    # processing or downloaded.
    # The service honours Idempotency-Key: a kill between a POST and its journal write leaves
    # a submit in doubt, and resubmitting it with the same key must not bill twice.
    svc = make_service(root, cache, time_scale=0.5, honour_idempotency_key=True)
    svc.env["EMPIRIOLABS_MAX_JOBS"] = "2"
    try:
        yield svc
    finally:
        svc.static.stop()
        svc.fake.stop()


def _prompts() -> set[str]:
    return {f"The character wears a {o} and dances." for o in OUTFITS}


def _check_finished(svc: Service) -> None:
    videos = sorted((svc.root / "out" / "paid").rglob("take.mp4"))
    assert len(videos) == len(OUTFITS)
    by_prompt = svc.submits_by_prompt()
    assert set(by_prompt) == _prompts()
    assert all(n == 1 for n in by_prompt.values()), by_prompt  # one paid submit per key
    assert all(n == 1 for n in svc.fake.billed_by_key().values())
    assert [j["state"] for j in svc.jobs()] == ["stored"] * len(OUTFITS)


@pytest.mark.slow
def test_sigkill_at_random_moments_never_pays_twice(service: Service) -> None:
    service.recipe(OUTFITS)
    rng = random.Random(20261124)
    kills = 0
    for _ in range(8):
        proc = service.popen("run", "paid.yaml", "-q")
        time.sleep(rng.uniform(0.3, 2.0))  # the interpreter starts in ~0.3 s
        if proc.poll() is None:
            proc.kill()  # SIGKILL: no cleanup, no finally blocks
            kills += 1
        proc.communicate(timeout=60)
    assert kills >= 4  # the schedule really interrupted runs
    final = service.run_json()
    if final["_exit"] != 0:  # a kill mid-submit left a submit in doubt: the user decides
        assert "may already have been charged" in final["_stderr"], final["_stderr"]
        assert {j["state"] for j in service.jobs()} <= {"stored", "in_doubt"}
        final = service.run_json("--resubmit-in-doubt")  # the same Idempotency-Key
    assert final["_exit"] == 0, final["_stderr"]
    _check_finished(service)


@pytest.mark.slow
def test_two_processes_at_once_pay_for_each_generation_once(service: Service) -> None:
    service.recipe(OUTFITS)
    procs = [service.popen("run", "paid.yaml", "--jobs", "4") for _ in range(2)]
    outcomes = [p.communicate(timeout=120) for p in procs]
    for proc, (_, err) in zip(procs, outcomes, strict=True):
        assert proc.returncode == 0, err
    _check_finished(service)


@pytest.mark.slow
def test_ctrl_c_detaches_and_the_next_run_resumes_without_resubmitting(service: Service) -> None:
    service.recipe(OUTFITS[:3])
    service.env["EMPIRIOLABS_MAX_JOBS"] = "10"
    service.fake.config.queue_seconds = 6.0  # jobs stay queued (3 s at this scale)
    proc = service.popen("run", "paid.yaml")
    journal = Journal(service.cache)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if [r.state for r in journal.all()] == ["submitted"] * 3:
            break
        time.sleep(0.05)
    assert len(service.fake.submissions) == 3
    # (A Ctrl-C between a submit's answer and its journal write leaves it "submitting": the
    # next run settles it from the usage API; test_crash_after_the_post_was_accepted covers it.)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "detached" in err and "Run the same command to resume" in err
    assert "Traceback" not in err
    assert {j["state"] for j in service.jobs()} == {"submitted"}
    plan = json.loads(service.cli("plan", "paid.yaml", "--json").stdout)
    assert plan["estimated_usd"] == 0  # already paid: resuming costs nothing more
    assert all(i["reason"].startswith("resume job job_") for i in plan["instances"])
    service.fake.config.queue_seconds = 1.0
    resumed = service.run_json()
    assert resumed["_exit"] == 0, resumed["_stderr"]
    assert resumed["jobs_submitted"] == 0
    assert resumed["jobs_resumed"] == 3
    assert len(service.fake.submissions) == 3
    assert len(list((service.root / "out" / "paid").rglob("take.mp4"))) == 3


def _key(svc: Service) -> str:
    proc = svc.cli("plan", "paid.yaml", "--json")
    assert proc.returncode == 0, proc.stderr
    (item,) = [i for i in json.loads(proc.stdout)["instances"] if i["stage"] == "take"]
    return str(item["key"])


def _crashed_mid_submit(svc: Service) -> JobRecord:
    """The journal as a process killed between its journal write and the POST's answer."""
    return Journal(svc.cache).begin(
        _key(svc),
        label="take[red-jacket]",
        recipe="paid",
        provider="empiriolabs",
        request={"mode": "std"},
        idempotency_key="mf-crashed",
        estimated_usd=0.42,
    )


@pytest.mark.slow
def test_crash_mid_submit_stays_in_doubt_until_the_user_resubmits(service: Service) -> None:
    service.recipe(OUTFITS[:1])
    _crashed_mid_submit(service)
    result = service.run_json()
    assert result["_exit"] == 1
    assert "may already have been charged" in result["_stderr"]
    assert service.fake.submissions == []  # the usage API lists nothing: still no proof
    paid = service.run_json("--resubmit-in-doubt")
    assert paid["_exit"] == 0, paid["_stderr"]
    assert len(service.fake.submissions) == 1
    # sent with the crashed submit's Idempotency-Key, as the first try would have been
    assert list(service.fake.submits_by_key) == ["mf-crashed"]
    states = [j["state"] for j in service.jobs("--all")]
    assert states == ["in_doubt", "stored"]  # the in-doubt record is kept in the ledger


@pytest.mark.slow
def test_crash_after_the_post_was_accepted_is_adopted_only_by_the_user(service: Service) -> None:
    service.recipe(OUTFITS[:1])
    _crashed_mid_submit(service)
    time.sleep(0.01)
    # The POST reached the service (and was charged) before the process died.
    body = {
        "model": "kling-v3-motion-control",
        "prompt": "The character wears a red jacket and dances.",
        "reference_image": service.static.url + "/missing.png",
        "reference_video": service.static.url + "/missing.mp4",
        "character_orientation": "video",
        "duration": 3,
    }
    service.fake.config.fetch_references = False
    answer = httpx.post(
        service.fake.url + "/v1/videos/generations",
        json=body,
        headers={"Authorization": f"Bearer {API_KEY}", "Idempotency-Key": "mf-crashed"},
    )
    assert answer.status_code == 200
    result = service.run_json()
    assert result["_exit"] == 1  # in doubt: nothing is adopted by itself
    assert len(service.fake.submissions) == 1
    deadline = time.monotonic() + 30
    job_url = f"{service.fake.url}/v1/jobs/{answer.json()['job_id']}"
    auth = {"Authorization": f"Bearer {API_KEY}"}
    while httpx.get(job_url, headers=auth).json()["status"] != "completed":
        assert time.monotonic() < deadline
        time.sleep(0.05)  # the job is still being made: its video is what the user looks at
    (row,) = service.jobs()
    (candidate,) = row["candidates"]
    adopt = service.cli("jobs", "adopt", row["key"][:12], "--event", candidate["event_id"])
    assert adopt.returncode == 0, adopt.stderr
    final = service.run_json()
    assert final["_exit"] == 0, final["_stderr"]
    assert final["jobs_submitted"] == 0
    assert len(service.fake.submissions) == 1  # adopted, not paid again
