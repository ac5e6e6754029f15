"""Paid generation through the CLI, against the fake EmpirioLabs server on loopback.

Every test asserts what a user sees (exit code, message, files, ``motionflow jobs``) and what
the service was charged for (accepted submits, counted by the fake server).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from service import API_KEY, Service, make_service, new_project

from motionflow.fakeapi.faults import JOB_PATH, SUBMIT_PATH, Faults
from motionflow.fakeapi.placeholder import LABEL

OUTFITS = ["red jacket", "white hoodie", "blue coat"]


def _videos(svc: Service, name: str = "paid") -> list[Path]:
    return sorted((svc.root / "out" / name).rglob("take.mp4"))


@pytest.mark.slow
def test_paid_sweep_end_to_end_then_rerun_submits_nothing(service: Service) -> None:
    service.recipe(OUTFITS)
    first = service.run_json()
    assert first["_exit"] == 0, first["_stderr"]
    assert first["jobs_submitted"] == 3
    assert service.submits_by_prompt() == {
        f"The character wears a {o} and dances.": 1 for o in OUTFITS
    }
    videos = _videos(service)
    assert len(videos) == 3
    assert all(LABEL.encode() in v.read_bytes() for v in videos)  # the fake's real video
    # the service fetched the published references over HTTP, once per digest
    assert len(list((service.root / "published").iterdir())) == 2
    # charged amounts come from the usage API: 3 s at $0.14
    assert first["spent_usd"] == pytest.approx(3 * 0.42)
    jobs = service.jobs()
    assert [j["state"] for j in jobs] == ["stored"] * 3
    assert {j["job_id"] for j in jobs} == set(service.fake.job_ids())
    assert all(j["actual_usd"] == pytest.approx(0.42) for j in jobs)

    again = service.run_json()
    assert again["_exit"] == 0
    assert again["jobs_submitted"] == 0
    assert len(service.fake.submissions) == 3


@pytest.mark.slow
def test_adding_takes_later_never_repeats_old_ones(service: Service) -> None:
    service.recipe(OUTFITS[:1], takes=1)
    assert service.run_json()["_exit"] == 0
    service.recipe(OUTFITS[:1], takes=3)
    result = service.run_json()
    assert result["_exit"] == 0, result["_stderr"]
    assert result["jobs_submitted"] == 2
    assert len(service.fake.submissions) == 3


@pytest.mark.slow
def test_spend_summarises_the_ledger_by_recipe_stage_and_day(service: Service) -> None:
    service.recipe(OUTFITS[:2])
    assert service.run_json()["_exit"] == 0
    for by, group in (("recipe", "paid"), ("stage", "paid/take")):
        proc = service.cli("spend", "--by", by, "--json")
        assert proc.returncode == 0, proc.stderr
        rows = json.loads(proc.stdout)
        assert rows == [
            {
                "group": group,
                "jobs": 2,
                "estimated_usd": 0.84,
                "charged_usd": 0.84,
                "unconfirmed": 0,
                "in_doubt": 0,
                "in_doubt_usd": 0.0,
            }
        ]
    day = json.loads(service.cli("spend", "--by", "day", "--json").stdout)
    assert len(day) == 1 and len(day[0]["group"]) == 10
    text = service.cli("spend")
    assert "total" in text.stdout and "$0.84" in text.stdout


# -- no money without a stated limit, no money on bad configuration -----------------------------


@pytest.mark.slow
def test_no_limit_and_no_terminal_refuses_with_exit_3(service: Service) -> None:
    service.recipe(OUTFITS[:2], budget=None)
    proc = service.cli("run", "paid.yaml")
    assert proc.returncode == 3
    assert "--max-usd" in proc.stderr and "--yes" in proc.stderr
    assert "$0.84" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert service.fake.submissions == []
    yes = service.cli("run", "paid.yaml", "--yes")
    assert yes.returncode == 0, yes.stderr
    assert len(service.fake.submissions) == 2


def test_budget_below_the_plan_refuses_before_anything_is_paid(service: Service) -> None:
    service.recipe(OUTFITS, budget=1.0)
    proc = service.cli("run", "paid.yaml")
    assert proc.returncode == 3
    assert "$1.26" in proc.stderr and "$1.00" in proc.stderr
    assert service.fake.submissions == []


def test_missing_api_key_is_a_usage_error_that_costs_nothing(service: Service) -> None:
    service.recipe(OUTFITS[:1])
    proc = service.cli("run", "paid.yaml", env={"EMPIRIOLABS_API_KEY": ""})
    assert proc.returncode == 2
    assert "EMPIRIOLABS_API_KEY" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert service.fake.requests.total() == 0


def test_empiriolabs_without_a_publisher_is_a_usage_error(service: Service) -> None:
    recipe = service.recipe(OUTFITS[:1])
    path = service.root / recipe
    path.write_text(
        "\n".join(line for line in path.read_text().splitlines() if "publish:" not in line),
        encoding="utf-8",
    )
    proc = service.cli("run", recipe)
    assert proc.returncode == 2
    assert "publish:" in proc.stderr and "--publish" in proc.stderr
    assert service.fake.requests.total() == 0


@pytest.mark.slow
def test_cli_publish_overrides_the_recipe(service: Service) -> None:
    recipe = service.recipe(OUTFITS[:1])
    proc = service.cli(
        "run",
        recipe,
        "--publish",
        "static",
        "--publish-option",
        "dir=elsewhere",
        "--publish-option",
        f"base_url={service.static.url}/elsewhere",
    )
    # The static host serves root/published only, so the service cannot fetch: the job fails
    # at the service, which shows that the CLI's publisher was used.
    assert list((service.root / "elsewhere").iterdir())
    assert proc.returncode == 1
    bad = service.cli("run", recipe, "--publish", "static", "--publish-option", "nonsense")
    assert bad.returncode == 2 and "key=value" in bad.stderr


# -- the contract's error table, row by row ------------------------------------------------------


def test_401_bad_key_stops_the_run_without_retrying(service: Service) -> None:
    service.recipe(OUTFITS)
    result = service.run_json(env={"EMPIRIOLABS_API_KEY": "sk-empiriolabs-wrong"})
    assert result["_exit"] == 1
    assert "invalid" in result["_stderr"].lower() or "api key" in result["_stderr"].lower()
    assert service.fake.requests[("POST", SUBMIT_PATH)] == 1  # no retry, no further submits
    assert service.fake.submissions == []
    assert service.jobs() == []  # nothing was charged, nothing to remember


@pytest.mark.fake(faults=Faults(insufficient_credits_after=1))
@pytest.mark.slow
def test_402_stops_submitting_but_polls_what_was_submitted(service: Service) -> None:
    service.recipe(OUTFITS)
    result = service.run_json("--jobs", "1")
    assert result["_exit"] == 1
    assert len(service.fake.submissions) == 1
    assert len(_videos(service)) == 1  # the accepted job was still polled and downloaded
    assert "credits" in result["_stderr"].lower()
    assert service.fake.requests[("POST", SUBMIT_PATH)] == 2  # the 402, then nothing more


@pytest.mark.fake(faults=Faults(unknown_model=True))
def test_404_model_not_found_stops_with_a_clear_message(service: Service) -> None:
    service.recipe(OUTFITS)
    result = service.run_json()
    assert result["_exit"] == 1
    assert "kling-v3-motion-control" in result["_stderr"]
    assert service.fake.requests[("POST", SUBMIT_PATH)] == 1
    assert service.fake.submissions == []


@pytest.mark.fake(faults=Faults(expire_after_complete=True))
@pytest.mark.slow
def test_404_on_a_job_marks_it_lost_and_pays_again_only_on_request(service: Service) -> None:
    # The job answers 404 from the moment it completes; with a retention this short the hour
    # has "certainly passed" within the run, so the 404s are proof and the result is lost.
    service.env.update({"EMPIRIOLABS_RETENTION_SECONDS": "0.2", "EMPIRIOLABS_JOB_TIMEOUT": "1"})
    service.recipe(OUTFITS[:1])
    result = service.run_json()
    assert result["_exit"] == 1
    assert "--resubmit-lost" in result["_stderr"]
    job_id = service.fake.job_ids()[0]
    assert job_id in result["_stderr"]
    assert [j["state"] for j in service.jobs()] == ["lost"]
    again = service.run_json()
    assert again["_exit"] == 1 and again["jobs_submitted"] == 0
    assert len(service.fake.submissions) == 1
    service.fake.arm(expire_after_complete=False)
    paid = service.run_json("--resubmit-lost")
    assert paid["_exit"] == 0, paid["_stderr"]
    assert len(service.fake.submissions) == 2
    assert len(_videos(service)) == 1


@pytest.mark.fake(faults=Faults(rate_limit_burst=4, retry_after_seconds=0.1))
@pytest.mark.slow
def test_429_waits_and_retries_without_paying_twice(service: Service) -> None:
    service.recipe(OUTFITS)
    result = service.run_json()
    assert result["_exit"] == 0, result["_stderr"]
    assert service.fake.rate_limited == 4
    assert sorted(service.submits_by_prompt().values()) == [1, 1, 1]


@pytest.mark.fake(faults=Faults(server_errors=3, server_error_paths=frozenset({JOB_PATH})))
@pytest.mark.slow
def test_5xx_on_a_poll_is_retried_with_backoff(service: Service) -> None:
    service.recipe(OUTFITS[:1])
    result = service.run_json()
    assert result["_exit"] == 0, result["_stderr"]
    assert len(service.fake.submissions) == 1


@pytest.mark.fake(
    faults=Faults(
        server_errors=1,
        server_error_status=502,
        server_error_methods=frozenset({"POST"}),
        server_error_paths=frozenset({SUBMIT_PATH}),
    )
)
@pytest.mark.slow
def test_5xx_on_a_submit_stays_in_doubt_even_when_usage_shows_no_charge(
    service: Service,
) -> None:
    # The gateway error came before the service took the job, so the usage API lists nothing;
    # but billing can lag and pages can be cut: absence is no proof, so it is not sent again.
    service.recipe(OUTFITS[:1])
    result = service.run_json()
    assert result["_exit"] == 1
    assert result["jobs_in_doubt"] == 1
    assert "may already have been charged" in result["_stderr"]
    again = service.run_json()
    assert again["_exit"] == 1
    assert service.fake.requests[("POST", SUBMIT_PATH)] == 1
    assert service.fake.submissions == []
    rows = service.jobs()
    assert [r["state"] for r in rows] == ["in_doubt"]
    assert rows[0]["candidates"] == []  # nothing billed around then: nothing to adopt


@pytest.mark.fake(
    faults=Faults(
        server_errors=1,
        server_error_methods=frozenset({"POST"}),
        server_error_paths=frozenset({SUBMIT_PATH}),
    )
)
@pytest.mark.slow
def test_in_doubt_submit_waits_for_the_explicit_flag(service: Service) -> None:
    service.recipe(OUTFITS[:1])
    result = service.run_json()
    assert result["_exit"] == 1
    assert "may already have been charged" in result["_stderr"]
    assert "--resubmit-in-doubt" in result["_stderr"]
    assert "take[red-jacket]" in result["_stderr"]
    assert [j["state"] for j in service.jobs()] == ["in_doubt"]
    again = service.run_json()
    assert again["_exit"] == 1
    assert service.fake.requests[("POST", SUBMIT_PATH)] == 1
    paid = service.run_json("--resubmit-in-doubt")
    assert paid["_exit"] == 0, paid["_stderr"]
    assert len(service.fake.submissions) == 1
    assert [j["state"] for j in service.jobs("--all")] == ["in_doubt", "stored"]


@pytest.mark.fake(faults=Faults(reset_after_read=1))
@pytest.mark.slow
def test_reset_after_the_submit_is_never_resent_and_the_user_adopts_the_charge(
    service: Service,
) -> None:
    service.recipe(OUTFITS[:1])
    result = service.run_json()
    assert result["_exit"] == 1
    assert service.fake.requests[("POST", SUBMIT_PATH)] == 1  # accepted once, never resent
    (row,) = service.jobs()
    assert row["state"] == "in_doubt"
    (charge,) = service.fake.charges()
    (candidate,) = row["candidates"]  # the account's charge around that time, with its video
    assert [u.split("?")[0] for u in candidate["output_urls"]] == [charge["output_url"]]
    adopt = service.cli("jobs", "adopt", row["key"][:12], "--event", candidate["event_id"])
    assert adopt.returncode == 0, adopt.stderr
    assert "0 jobs submitted" in adopt.stdout
    (row,) = service.jobs()
    assert row["state"] == "stored" and row["actual_usd"] == pytest.approx(charge["amount_usd"])
    final = service.run_json()
    assert final["_exit"] == 0, final["_stderr"]
    assert final["jobs_submitted"] == 0
    assert len(service.fake.submissions) == 1
    assert len(_videos(service)) == 1


@pytest.mark.fake(faults=Faults(lost_response=1, lost_response_style="garbage"))
@pytest.mark.slow
def test_garbage_answer_to_a_submit_is_in_doubt_and_never_resent(service: Service) -> None:
    service.recipe(OUTFITS[:1])
    result = service.run_json()
    assert result["_exit"] == 1
    assert "may already have been charged" in result["_stderr"]
    assert len(service.fake.submissions) == 1
    assert service.fake.requests[("POST", SUBMIT_PATH)] == 1
    service.run_json()
    assert service.fake.requests[("POST", SUBMIT_PATH)] == 1


@pytest.mark.fake(faults=Faults(reject_submits=1))
@pytest.mark.slow
def test_422_stops_that_job_and_shows_the_servers_message(service: Service) -> None:
    service.recipe(OUTFITS[:2])
    result = service.run_json("--jobs", "1")
    assert result["_exit"] == 1
    assert "no person was detected" in result["_stderr"]
    assert "nothing was charged" in result["_stderr"]
    assert len(service.fake.submissions) == 1  # the other variant went through
    assert len(_videos(service)) == 1


@pytest.mark.fake(faults=Faults(malformed_json=2))
@pytest.mark.slow
def test_malformed_json_on_a_poll_is_retried(service: Service) -> None:
    service.recipe(OUTFITS[:1])
    result = service.run_json()
    assert result["_exit"] == 0, result["_stderr"]
    assert len(service.fake.submissions) == 1


@pytest.mark.fake(faults=Faults(fail_jobs=1))
@pytest.mark.slow
def test_failed_job_shows_the_error_and_is_retried_only_on_request(service: Service) -> None:
    service.recipe(OUTFITS[:1])
    result = service.run_json()
    assert result["_exit"] == 1
    assert "failed" in result["_stderr"] and "--retry-failed" in result["_stderr"]
    rows = service.jobs()
    assert rows[0]["state"] == "failed" and rows[0]["error"]
    listed = service.cli("jobs")
    assert "failed" in listed.stdout and rows[0]["job_id"] in listed.stdout
    assert service.run_json()["_exit"] == 1
    assert len(service.fake.submissions) == 1
    retried = service.run_json("--retry-failed")
    assert retried["_exit"] == 0, retried["_stderr"]
    assert len(service.fake.submissions) == 2


@pytest.mark.parametrize("shape", ["data", "output_urls", "urls", "video", "video_url", "url"])
@pytest.mark.slow
def test_every_result_shape_is_read(tmp_path: Path, shape: str) -> None:
    root, cache = new_project(tmp_path)
    svc = make_service(root, cache, result_shape=shape)
    try:
        svc.recipe(OUTFITS[:1])
        result = svc.run_json()
        assert result["_exit"] == 0, result["_stderr"]
        assert len(_videos(svc)) == 1
    finally:
        svc.static.stop()
        svc.fake.stop()


@pytest.mark.fake(faults=Faults(slow_seconds=20.0, slow_paths=frozenset({JOB_PATH})))
@pytest.mark.slow
def test_slow_responses_are_waited_for(service: Service) -> None:
    service.recipe(OUTFITS[:1])
    result = service.run_json()
    assert result["_exit"] == 0, result["_stderr"]


# -- the key never leaves the API host -------------------------------------------------------------


@pytest.mark.fake(faults=Faults(fail_jobs=1))
@pytest.mark.slow
def test_the_api_key_is_in_no_file_log_or_message(service: Service) -> None:
    service.recipe(OUTFITS[:2])
    outputs = [service.cli("run", "paid.yaml", "--jobs", "1")]
    outputs.append(service.cli("run", "paid.yaml", "--json", "--retry-failed"))
    outputs.append(service.cli("jobs"))
    outputs.append(service.cli("spend", "--json"))
    outputs.append(service.cli("run", "paid.yaml", env={"EMPIRIOLABS_API_KEY": API_KEY + "x"}))
    for proc in outputs:
        assert API_KEY not in proc.stdout + proc.stderr
    for folder in (service.cache, service.root):
        for path in folder.rglob("*"):
            if path.is_file():
                assert API_KEY.encode() not in path.read_bytes(), path
