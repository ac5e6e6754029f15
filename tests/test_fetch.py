"""Remote inputs: fetched once over real loopback HTTP, size-limited, checked against the pin."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ASSETS, Project


class _Server:
    def __init__(self, root: Path) -> None:
        self.requests: list[str] = []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args: object, **kwargs: object) -> None:
                super().__init__(*args, directory=str(root), **kwargs)  # type: ignore[arg-type]

            def do_GET(self) -> None:
                server.requests.append(self.path)
                super().do_GET()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[_Server]:
    root = tmp_path / "www"
    root.mkdir()
    (root / "dance.mp4").write_bytes((ASSETS / "dance.mp4").read_bytes())
    srv = _Server(root)
    yield srv
    srv.close()


RECIPE = """\
version: 1
name: remote
inputs:
  hero: assets/hero.png
  dance: {DANCE}
stages:
  prompt: {uses: prompt, with: {template: "A dancer."}}
  take:
    uses: kling.motion_control
    with: {image: "${inputs.hero}", video: "${inputs.dance}", prompt: "${stages.prompt.text}", duration: 1, character_orientation: video}
outputs: [take]
"""

SHA = hashlib.sha256((ASSETS / "dance.mp4").read_bytes()).hexdigest()


@pytest.mark.slow
def test_pinned_remote_input_is_fetched_once(project: Project, server: _Server) -> None:
    spec = f'{{url: "{server.url}/dance.mp4", sha256: "{SHA}"}}'
    project.write("remote.yaml", RECIPE.replace("{DANCE}", spec))
    # the pin identifies the content: planning needs no network
    plan = project.plan_json("remote.yaml")
    assert plan["to_run"] == 2 and server.requests == []
    first = project.run_json("remote.yaml")
    assert first["_exit"] == 0, first["_stderr"]
    assert first["jobs_submitted"] == 1 and server.requests == ["/dance.mp4"]
    again = project.run_json("remote.yaml", "--recheck")
    assert (again["executed"], again["jobs_submitted"]) == (0, 0)
    assert server.requests == ["/dance.mp4"]


@pytest.mark.slow
def test_pin_mismatch_is_refused_and_nothing_stored(project: Project, server: _Server) -> None:
    spec = f'{{url: "{server.url}/dance.mp4", sha256: "{"0" * 64}"}}'
    project.write("remote.yaml", RECIPE.replace("{DANCE}", spec))
    proc = project.cli("run", "remote.yaml")
    assert proc.returncode == 2, proc.stderr
    assert "input 'dance'" in proc.stderr and f"has sha256 {SHA}" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert (
        not any((project.cache / "blobs").rglob("*"))
        if (project.cache / "blobs").exists()
        else True
    )
    assert not project.out("remote").exists()


@pytest.mark.slow
def test_size_limit_and_http_errors(project: Project, server: _Server) -> None:
    spec = f'{{url: "{server.url}/dance.mp4", max_mb: 0.01}}'
    project.write("remote.yaml", RECIPE.replace("{DANCE}", spec))
    proc = project.cli("run", "remote.yaml")
    assert proc.returncode == 2 and "over the 0.01 MB limit" in proc.stderr, proc.stderr
    project.write("remote.yaml", RECIPE.replace("{DANCE}", f'{{url: "{server.url}/missing.mp4"}}'))
    proc = project.cli("run", "remote.yaml")
    assert proc.returncode == 2 and "answered HTTP 404" in proc.stderr, proc.stderr


def test_only_http_urls_are_accepted(project: Project) -> None:
    project.write("remote.yaml", RECIPE.replace("{DANCE}", '{url: "file:///etc/passwd"}'))
    proc = project.cli("validate", "remote.yaml")
    assert proc.returncode == 2
    assert "remote.yaml:5:" in proc.stderr and "should match pattern '^https?://'" in proc.stderr


@pytest.mark.slow
def test_same_bytes_from_a_url_or_a_file_are_one_generation(
    project: Project, server: _Server
) -> None:
    project.write("local.yaml", RECIPE.replace("{DANCE}", "assets/dance.mp4"))
    assert project.run_json("local.yaml")["jobs_submitted"] == 1
    spec = f'{{url: "{server.url}/dance.mp4", sha256: "{SHA}"}}'
    project.write(
        "remote.yaml", RECIPE.replace("{DANCE}", spec).replace("name: remote", "name: remote2")
    )
    result = project.run_json("remote.yaml")
    assert result["_exit"] == 0, result["_stderr"]
    assert (result["jobs_submitted"], result["cached"]) == (0, 2)
