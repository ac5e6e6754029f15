"""Jobs in doubt, transient 404s, collecting, and the ledger, against a shared, imperfect account.

Issue "money path", items 1-7, 10, 15 and 16, each through the CLI against the fake EmpirioLabs
server telling the untruths a real account tells: jobs created after a 5xx, skewed clocks,
other people's charges, cut usage pages, other spellings, transient 404s, error pages served
with 200. Every test counts what the service billed (``fake.charges()``), not what we think.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from conftest import SMALL_RECIPE, Project
from service import Service, make_service, new_project

from motionflow.cache.journal import Journal
from motionflow.errors import CacheError
from motionflow.fakeapi.faults import JOB_PATH, SUBMIT_PATH, Faults
from motionflow.media.probe import probe

OUTFITS = ["red jacket", "white hoodie"]


def _ours(svc: Service) -> list[dict[str, object]]:
    return [c for c in svc.fake.charges() if c["owner"] == "us"]


def _videos(svc: Service) -> list[Path]:
    return sorted((svc.root / "out" / "paid").rglob("take.mp4"))


def _wait_for(predicate: object, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


# -- 1-6: a submit in doubt is never paid again, nor adopted, by itself -----------------------


@pytest.mark.fake(faults=Faults(late_submits=1, late_seconds=40.0))  # 0.8 s at this scale
@pytest.mark.slow
def test_1_a_job_created_after_the_gateway_5xx_is_not_paid_twice(service: Service) -> None:
    service.recipe(OUTFITS)
    first = service.run_json("--jobs", "1")
    assert first["_exit"] == 1
    _wait_for(lambda: len(_ours(service)) == 2)  # the late job exists now, and is billed
    again = service.run_json()
    assert again["_exit"] == 1
    assert len(_ours(service)) == 2  # one per generation: the in-doubt one was not resent
    assert service.fake.requests[("POST", SUBMIT_PATH)] == 2
    (doubt,) = [r for r in service.jobs() if r["state"] == "in_doubt"]
    late = next(
        c for c in _ours(service) if c["job_id"] not in {r["job_id"] for r in service.jobs()}
    )
    assert [c["output_urls"][0].split("?")[0] for c in doubt["candidates"]] == [late["output_url"]]


@pytest.mark.parametrize("skew", [-8.0, 8.0])
@pytest.mark.slow
def test_2_a_skewed_service_clock_never_turns_a_charge_into_not_charged(
    tmp_path: Path, skew: float
) -> None:
    root, cache = new_project(tmp_path)
    # the fake scales every time by its time_scale (0.02 here): this is `skew` real seconds
    svc = make_service(
        root, cache, clock_skew_seconds=skew / 0.02, faults=Faults(created_then_5xx=1)
    )
    try:
        svc.recipe(OUTFITS[:1])
        assert svc.run_json()["_exit"] == 1
        assert svc.run_json()["_exit"] == 1
        assert len(_ours(svc)) == 1
        (row,) = svc.jobs()
        assert row["state"] == "in_doubt"
        assert len(row["candidates"]) == 1  # shown, whatever the service's clock says
        assert abs(row["candidates"][0]["offset_seconds"] - skew) < 5
    finally:
        svc.static.stop()
        svc.fake.stop()


@pytest.mark.fake(
    usage_mode_words={"std": "standard", "pro": "professional"},
    faults=Faults(reset_after_read=1),
)
@pytest.mark.slow
def test_3_another_spelling_of_mode_hides_no_charge(service: Service) -> None:
    service.recipe(OUTFITS[:1])
    assert service.run_json()["_exit"] == 1
    assert service.run_json()["_exit"] == 1
    assert len(_ours(service)) == 1
    (row,) = service.jobs()
    (candidate,) = row["candidates"]
    assert candidate["mode"] == "standard"  # shown as the service spells it, not filtered


@pytest.mark.fake(usage_page_size=2, faults=Faults(created_then_5xx=1))
@pytest.mark.slow
def test_4_a_busy_account_with_cut_pages_is_read_to_the_end(service: Service) -> None:
    service.recipe(OUTFITS[:1])
    assert service.run_json()["_exit"] == 1
    for _ in range(25):  # strangers' charges, newer than ours: 13 pages of 2
        service.fake.add_stranger_job()
    assert service.run_json()["_exit"] == 1
    assert len(_ours(service)) == 1
    (row,) = service.jobs()
    ours = _ours(service)[0]["output_url"]
    found = [c for c in row["candidates"] if c["output_urls"][0].split("?")[0] == ours]
    assert len(found) == 1  # our charge, on the last page, is among the candidates


@pytest.mark.fake(strangers_per_submit=1, faults=Faults(created_then_5xx=1))
@pytest.mark.slow
def test_5_a_strangers_job_is_never_adopted_as_ours(service: Service) -> None:
    service.recipe(OUTFITS[:1])
    assert service.run_json()["_exit"] == 1
    assert service.run_json()["_exit"] == 1
    assert _videos(service) == []  # nothing stored: neither charge was taken by itself
    (row,) = service.jobs()
    assert len(row["candidates"]) == 2  # ours and the stranger's, side by side
    ours = _ours(service)[0]["output_url"]
    (mine,) = [c for c in row["candidates"] if c["output_urls"][0].split("?")[0] == ours]
    adopt = service.cli("jobs", "adopt", row["key"][:12], "--event", mine["event_id"])
    assert adopt.returncode == 0, adopt.stderr
    final = service.run_json()
    assert final["_exit"] == 0, final["_stderr"]
    assert final["jobs_submitted"] == 0
    assert len(_ours(service)) == 1
    # the one chosen can no longer be adopted twice
    again = service.cli("jobs", "adopt", row["key"][:12], "--event", mine["event_id"])
    assert again.returncode == 2


@pytest.mark.fake(honour_idempotency_key=True, faults=Faults(created_then_5xx=1))
@pytest.mark.slow
def test_6_resubmit_in_doubt_sends_the_same_idempotency_key(service: Service) -> None:
    service.recipe(OUTFITS[:1])
    assert service.run_json()["_exit"] == 1
    paid = service.run_json("--resubmit-in-doubt")
    assert paid["_exit"] == 0, paid["_stderr"]
    assert service.fake.requests[("POST", SUBMIT_PATH)] == 2
    assert service.fake.repeat_submits == 1  # the service recognised the resubmission
    assert list(service.fake.billed_by_key().values()) == [1]
    assert len(_videos(service)) == 1
    spend = json.loads(service.cli("spend", "--json").stdout)
    assert spend[0]["jobs"] == 1 and spend[0]["charged_usd"] == pytest.approx(0.42)


# -- 7: lost only when proven -------------------------------------------------------------


@pytest.mark.fake(faults=Faults(poll_not_found=3))
@pytest.mark.slow
def test_7_transient_404s_on_polls_lose_nothing(service: Service) -> None:
    service.recipe(OUTFITS[:1])
    result = service.run_json()
    assert result["_exit"] == 0, result["_stderr"]
    assert [r["state"] for r in service.jobs()] == ["stored"]
    assert len(service.fake.submissions) == 1


@pytest.mark.fake(faults=Faults(file_not_found=2, file_error_page=1))
@pytest.mark.slow
def test_7_404s_and_an_error_page_on_the_output_url_are_retried_as_downloads(
    service: Service,
) -> None:
    service.recipe(OUTFITS[:1])
    result = service.run_json()
    assert result["_exit"] == 0, result["_stderr"]
    (video,) = _videos(service)
    assert probe(video).has_video  # the HTML error page was never stored as the result
    assert len(service.fake.submissions) == 1


@pytest.mark.fake(faults=Faults(poll_not_found=1000))
@pytest.mark.slow
def test_7_persistent_404s_inside_the_retention_leave_the_job_pending(service: Service) -> None:
    service.env["EMPIRIOLABS_NOT_FOUND_PATIENCE"] = "1"
    service.recipe(OUTFITS[:1])
    result = service.run_json()
    assert result["_exit"] == 1
    assert "not marked lost" in result["_stderr"]
    assert "--resubmit-lost" not in result["_stderr"]
    assert [r["state"] for r in service.jobs()] == ["submitted"]
    service.fake.arm(poll_not_found=0)  # the service catches up
    collected = service.cli("jobs", "collect")
    assert collected.returncode == 0, collected.stderr
    assert "Collected 1" in collected.stdout
    final = service.run_json()
    assert final["_exit"] == 0, final["_stderr"]
    assert final["jobs_submitted"] == 0 and len(service.fake.submissions) == 1


# -- 10: harvest is independent of the recipe ---------------------------------------------


@pytest.mark.slow
def test_10_jobs_of_an_interrupted_run_with_other_vars_are_collected(service: Service) -> None:
    service.recipe(OUTFITS, extra="vars: {style: plain}\n")
    text = (service.root / "paid.yaml").read_text(encoding="utf-8")
    text = text.replace("and dances.", "and dances, {{ style }}.")
    (service.root / "paid.yaml").write_text(text, encoding="utf-8")
    service.fake.config.queue_seconds = 200.0  # 4 s at this scale: jobs wait while we stop
    proc = service.popen("run", "paid.yaml", "--var", "style=neon")
    journal = Journal(service.cache)
    _wait_for(lambda: [r.state for r in journal.all()] == ["submitted"] * 2, 30)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    plan = service.cli("plan", "paid.yaml")
    assert "2 paid job(s)" in plan.stdout + plan.stderr
    assert "motionflow jobs collect" in plan.stdout + plan.stderr
    service.fake.config.queue_seconds = 1.0
    other = service.run_json()  # style=plain: other keys, yet it fetches the neon jobs
    assert other["_exit"] == 0, other["_stderr"]
    assert other["jobs_collected"] == 2
    stored = [r for r in service.jobs() if "neon" in r["label"] or r["state"] == "stored"]
    assert len(stored) == 4
    back = service.run_json("--var", "style=neon")
    assert back["_exit"] == 0, back["_stderr"]
    assert back["jobs_submitted"] == 0
    assert len(service.fake.submissions) == 4  # 2 neon + 2 plain, each once


# -- 15, 16: one record per key; the ledger counts each charge once --------------------------


@pytest.mark.fake(faults=Faults(created_then_5xx=1))
@pytest.mark.slow
def test_15_an_archived_in_doubt_record_is_never_settled_over_the_current_one(
    service: Service,
) -> None:
    service.recipe(OUTFITS[:1])
    assert service.run_json()["_exit"] == 1
    (doubt,) = service.jobs()
    (candidate,) = doubt["candidates"]
    paid = service.run_json("--resubmit-in-doubt")
    assert paid["_exit"] == 0, paid["_stderr"]
    before = {p.name: p.read_bytes() for p in (service.cache / "journal").rglob("*.json")}
    # the archived record's charge cannot be attached any more: its key has a live record
    late = service.cli("jobs", "adopt", doubt["key"][:12], "--event", candidate["event_id"])
    assert late.returncode == 2
    again = service.run_json()
    assert again["_exit"] == 0 and again["jobs_submitted"] == 0
    after = {p.name: p.read_bytes() for p in (service.cache / "journal").rglob("*.json")}
    assert after == before  # neither the archived nor the current record was rewritten
    assert [r["state"] for r in service.jobs("--all")] == ["in_doubt", "stored"]


@pytest.mark.slow
def test_15_an_archived_record_is_never_written_again(service: Service) -> None:
    service.recipe(OUTFITS[:1])
    assert service.run_json()["_exit"] == 0
    journal = Journal(service.cache)
    (record,) = journal.all()
    journal.archive(record, "test")
    with pytest.raises(CacheError, match="never written again"):
        journal.annotate(record, actual_usd=1.0)
    with pytest.raises(CacheError, match="never written again"):
        journal.archive(record, "archived twice")
    assert len(list((service.cache / "journal" / "archive").iterdir())) == 1


@pytest.mark.fake(faults=Faults(server_errors=1, server_error_paths=frozenset({SUBMIT_PATH})))
@pytest.mark.slow
def test_16_spend_counts_doubts_apart_and_a_redownload_once(service: Service) -> None:
    service.recipe(OUTFITS)
    first = service.run_json("--jobs", "1")
    assert first["_exit"] == 1  # one submit in doubt (nothing billed for it)
    rows = json.loads(service.cli("spend", "--json").stdout)
    assert rows[0]["jobs"] == 1 and rows[0]["in_doubt"] == 1
    assert rows[0]["charged_usd"] == pytest.approx(sum(c["amount_usd"] for c in _ours(service)))
    # the cache loses the stored video: it is downloaded again, not charged again
    (stored,) = [r for r in Journal(service.cache).all() if r.state == "stored"]
    assert stored.blob is not None
    blob = service.cache / "blobs" / stored.blob.split(":", 1)[1][:2]
    for path in blob.rglob("*"):
        path.chmod(0o644)
        path.unlink()
    again = service.run_json("--resubmit-in-doubt")
    assert again["_exit"] == 0, again["_stderr"]
    assert len(_videos(service)) == 2
    states = sorted(r["state"] for r in service.jobs("--all"))
    assert states == ["in_doubt", "stored", "stored", "stored"]  # one is a re-download
    rows = json.loads(service.cli("spend", "--json").stdout)
    assert rows[0]["jobs"] == len(_ours(service)) == 2
    assert rows[0]["charged_usd"] == pytest.approx(sum(c["amount_usd"] for c in _ours(service)))


@pytest.mark.slow
def test_16_simulated_jobs_are_free_everywhere(project: Project) -> None:
    project.write("small.yaml", SMALL_RECIPE)
    assert project.run_json("small.yaml")["_exit"] == 0
    rows = json.loads(project.cli("jobs", "--json").stdout)
    assert [(r["provider"], r["estimated_usd"], r["actual_usd"]) for r in rows] == [
        ("simulate", 0.0, 0.0)
    ] * 2
    spend = json.loads(project.cli("spend", "--simulated", "--json").stdout)
    assert spend[0]["jobs"] == 2 and spend[0]["charged_usd"] == 0
    assert json.loads(project.cli("spend", "--json").stdout) == []
    usage = json.loads(project.cli("cache", "du", "--json").stdout)
    assert usage["paid_usd"] == 0
    listed = json.loads(project.cli("cache", "ls", "--json").stdout)
    assert {e["estimated_usd"] for e in listed if e["paid"]} == {0.0}


@pytest.mark.fake(faults=Faults(server_errors=2, server_error_paths=frozenset({JOB_PATH})))
@pytest.mark.slow
def test_jobs_lists_the_provider_of_every_job(service: Service) -> None:
    service.recipe(OUTFITS[:1])
    assert service.run_json()["_exit"] == 0
    (row,) = service.jobs()
    assert row["provider"] == "empiriolabs"
    table = service.cli("jobs", env={"COLUMNS": "200"})
    assert "empiriolabs" in table.stdout
