"""Publishers through a paid run: url pass-through, the service's upload endpoint, a terminal
prompt before spending, and loopback (the simulate provider)."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ASSETS
from service import Service

from motionflow.fakeapi.faults import SUBMIT_PATH, UPLOAD_PATH
from motionflow.publish.fileserver import FileServer


def _use(svc: Service, name: str, publish: str, inputs: str | None = None) -> None:
    path = svc.root / name
    lines = path.read_text(encoding="utf-8").splitlines()
    lines = [f"publish: {publish}" if line.startswith("publish:") else line for line in lines]
    text = "\n".join(lines) + "\n"
    if inputs is not None:
        text = text.replace("  hero: assets/hero.png\n  dance: assets/dance.mp4\n", inputs)
    path.write_text(text, encoding="utf-8")


@pytest.mark.slow
def test_url_publisher_passes_on_the_urls_remote_inputs_came_from(service: Service) -> None:
    with FileServer(ASSETS) as origin:
        hero, dance = f"{origin.url}/hero.png", f"{origin.url}/dance.mp4"
        name = service.recipe(["red jacket", "blue coat"])
        _use(
            service,
            name,
            "{kind: url}",
            f"  hero: {{url: '{hero}'}}\n  dance: {{url: '{dance}'}}\n",
        )
        result = service.run_json()
        assert result["_exit"] == 0, result["_stderr"]
    sent = service.fake.submissions
    assert len(sent) == 2
    assert {b["reference_image"] for b in sent} == {hero}
    assert {b["reference_video"] for b in sent} == {dance}
    assert not (service.root / "published").exists()


def test_url_publisher_refuses_local_files_before_submitting(service: Service) -> None:
    name = service.recipe(["red jacket"])
    _use(service, name, "{kind: url}")
    result = service.run_json()
    assert result["_exit"] == 1
    assert "came from a URL" in result["_stderr"] and "static" in result["_stderr"]
    assert service.fake.requests[("POST", SUBMIT_PATH)] == 0


@pytest.mark.slow
def test_upload_publisher_uploads_each_digest_once_across_runs(service: Service) -> None:
    name = service.recipe(["red jacket", "blue coat"])
    _use(service, name, "{kind: empiriolabs-upload}")
    assert service.run_json()["_exit"] == 0
    assert service.fake.requests[("POST", UPLOAD_PATH)] == 2  # image and video, once each
    assert all(b["reference_image"].startswith(service.fake.url) for b in service.fake.submissions)
    service.recipe(["red jacket", "blue coat", "green scarf"])
    _use(service, name, "{kind: empiriolabs-upload}")
    result = service.run_json()
    assert result["_exit"] == 0, result["_stderr"]
    assert result["jobs_submitted"] == 1
    assert service.fake.requests[("POST", UPLOAD_PATH)] == 2  # remembered by digest


def test_static_dir_outside_the_project_needs_the_flag(service: Service, tmp_path: Path) -> None:
    name = service.recipe(["red jacket"])
    outside = tmp_path / "www"
    _use(service, name, f"{{kind: static, dir: '{outside}', base_url: 'https://cdn.example'}}")
    proc = service.cli("run", name)
    assert proc.returncode == 2
    assert "--allow-outside-project" in proc.stderr
    assert not outside.exists()
    assert service.fake.requests.total() == 0


def test_loopback_is_refused_for_the_real_service(service: Service) -> None:
    name = service.recipe(["red jacket"])
    _use(service, name, "{kind: loopback}")
    proc = service.cli("run", name)
    assert proc.returncode == 2
    assert "127.0.0.1" in proc.stderr
    assert service.fake.requests.total() == 0


def _run_on_a_terminal(svc: Service, answer: bytes) -> tuple[int, str]:
    """Run ``motionflow run paid.yaml`` with a pseudo-terminal, type ``answer``."""
    main, child = pty.openpty()
    proc = subprocess.Popen(
        svc.command("run", "paid.yaml"),
        cwd=svc.root,
        env={**svc.full_env(), "COLUMNS": "120"},
        stdin=child,
        stdout=child,
        stderr=child,
    )
    os.close(child)
    seen = b""
    deadline = time.monotonic() + 60
    answered = False
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            chunk = os.read(main, 4096)
        except OSError:
            break
        seen += chunk
        if not answered and b"[y/N]" in seen:
            os.write(main, answer)
            answered = True
    proc.wait(timeout=60)
    try:
        while chunk := os.read(main, 4096):
            seen += chunk
    except OSError:
        pass
    os.close(main)
    return proc.returncode, seen.decode("utf-8", "replace")


@pytest.mark.skipif(sys.platform != "linux", reason="pty semantics")
@pytest.mark.slow
def test_a_terminal_shows_the_price_and_asks_before_spending(service: Service) -> None:
    service.recipe(["red jacket", "blue coat"], budget=None)
    code, text = _run_on_a_terminal(service, b"n\n")
    assert code == 3
    assert "$0.84" in text and "Submit 2 paid generations" in text
    assert service.fake.submissions == []
    code, text = _run_on_a_terminal(service, b"y\n")
    assert code == 0, text
    assert len(service.fake.submissions) == 2


@pytest.mark.slow
def test_simulate_goes_through_the_client_and_the_journal(service: Service) -> None:
    name = service.recipe(["red jacket", "blue coat"], budget=None)
    path = service.root / name
    text = path.read_text(encoding="utf-8").replace("provider: empiriolabs", "provider: simulate")
    path.write_text(text.replace("publish: {kind: static", "# publish: {kind: static"), "utf-8")
    env = {"EMPIRIOLABS_API_KEY": ""}  # simulate needs no key, and no limit
    result = service.run_json(env=env)
    assert result["_exit"] == 0, result["_stderr"]
    assert result["jobs_submitted"] == 2 and result["spent_usd"] == 0
    jobs = service.jobs()
    assert [(j["provider"], j["state"]) for j in jobs] == [("simulate", "stored")] * 2
    assert all(j["job_id"].startswith("job_") for j in jobs)  # ids from the fake server
    assert service.fake.requests.total() == 0  # its own in-process server, not this one
    assert service.cli("spend", "--json").stdout.strip() == "[]"
    simulated = service.cli("spend", "--json", "--simulated").stdout
    assert '"jobs": 2' in simulated
