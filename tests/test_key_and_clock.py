"""The API key never leaks and a stepped clock never stalls a run (issue "money path", 14, 17).

Through the CLI, against the fake EmpirioLabs server: error bodies that echo the key in every
field, keys with characters that cannot go into a header, and a rate-limit window left by a
process whose wall clock was an hour ahead.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from service import API_KEY, Service, make_service, new_project

from motionflow.fakeapi.faults import SUBMIT_PATH, Faults

OUTFITS = ["red jacket", "white hoodie"]


def _forms(key: str) -> list[str]:
    return [key, repr(key)[1:-1], json.dumps(key)[1:-1], key.upper()]


def _no_key_anywhere(svc: Service, texts: list[str], key: str = API_KEY) -> None:
    for text in texts:
        for form in _forms(key):
            assert form not in text
    for folder in (svc.cache, svc.root):
        for path in folder.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                for form in _forms(key):
                    assert form.encode() not in data, path


@pytest.mark.fake(faults=Faults(echo_key_in_errors=True))
@pytest.mark.parametrize("style", ["openai", "anthropic", "flat"])
@pytest.mark.slow
def test_14_error_bodies_that_echo_the_key_in_every_field_are_redacted(
    service: Service, style: str
) -> None:
    service.recipe(OUTFITS)
    # 422 on the first submit (written to the journal as the failure), a 5xx on the second
    service.fake.arm(
        error_style=style,
        reject_submits=1,
        server_errors=1,
        server_error_paths=frozenset({SUBMIT_PATH}),
    )
    outputs = [service.cli("run", "paid.yaml", "--jobs", "1")]
    outputs.append(service.cli("run", "paid.yaml", "--json"))
    outputs.append(service.cli("jobs", "--json"))
    outputs.append(service.cli("jobs"))
    outputs.append(service.cli("run", "paid.yaml", env={"EMPIRIOLABS_API_KEY": API_KEY + "x"}))
    texts = [p.stdout + p.stderr for p in outputs]
    assert any("no person was detected" in t for t in texts)  # the server's message survives
    assert all("Traceback" not in t for t in texts)
    _no_key_anywhere(service, texts)
    _no_key_anywhere(service, texts, API_KEY + "x")


@pytest.mark.parametrize(
    "bad", [API_KEY + "\r\nX-Evil: 1", API_KEY + " ", "sk-empiriolabs-clé-7f3a9c", "\tsk-a b"]
)
def test_14_a_key_that_cannot_be_sent_is_refused_before_any_journal_record(
    service: Service, bad: str
) -> None:
    service.recipe(OUTFITS[:1])
    proc = service.cli("run", "paid.yaml", env={"EMPIRIOLABS_API_KEY": bad})
    if bad.strip() == API_KEY:  # surrounding whitespace is trimmed, as from a .env file
        assert proc.returncode == 0, proc.stderr
        return
    assert proc.returncode == 2, proc.stderr
    assert "EMPIRIOLABS_API_KEY" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (service.cache / "journal").exists() or not list(
        (service.cache / "journal").glob("*.json")
    )
    assert service.fake.requests[("POST", SUBMIT_PATH)] == 0
    _no_key_anywhere(service, [proc.stdout + proc.stderr], bad.strip())


def test_14_options_never_show_the_environment() -> None:
    from motionflow.providers.session import options_from_env

    options = options_from_env({"EMPIRIOLABS_API_KEY": API_KEY})
    assert API_KEY not in repr(options)
    assert API_KEY not in str(options)


@pytest.mark.slow
def test_17_a_window_left_by_a_clock_an_hour_ahead_does_not_stall_the_run(
    service: Service,
) -> None:
    # Another process, whose wall clock was an hour ahead, filled the shared window; then
    # the clock was set right. Its stamps lie in the future: they must not hold us an hour.
    state = service.cache / "ratelimit"
    state.mkdir(parents=True)
    ahead = time.time() + 3600
    window = {"stamps": [ahead + i / 100 for i in range(20)], "blocked_until": ahead + 60}
    (state / "window.json").write_text(json.dumps(window), encoding="utf-8")
    service.recipe(OUTFITS[:1])
    # The old limiter waited out the hour here; the rig's subprocess timeout (300 s) ends a
    # stalled run with an error, so reaching the asserts is the proof (nothing is timed).
    result = service.run_json(env={"EMPIRIOLABS_RATE_LIMIT": "50"})
    assert result["_exit"] == 0, result["_stderr"]
    assert len(service.fake.submissions) == 1


def test_14_the_journal_of_a_refused_request_holds_no_key(tmp_path: Path) -> None:
    root, cache = new_project(tmp_path)
    svc = make_service(root, cache, faults=Faults(echo_key_in_errors=True, reject_submits=1))
    try:
        svc.recipe(OUTFITS[:1])
        assert svc.run_json()["_exit"] == 1
        (record,) = (cache / "journal").glob("*.json")
        text = record.read_text(encoding="utf-8")
        assert "no person was detected" in text
        assert "[redacted]" in text
        assert API_KEY not in text
    finally:
        svc.static.stop()
        svc.fake.stop()
