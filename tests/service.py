"""A paid-run rig for tests: the fake EmpirioLabs server and a static file host, on loopback.

The CLI runs as a subprocess with ``provider: empiriolabs`` pointed at the fake server
(``EMPIRIOLABS_BASE_URL``), and publishes local media with the ``static`` publisher into a
folder this process serves over HTTP, exactly as a user's web server would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from motionflow.fakeapi.faults import Faults
from motionflow.fakeapi.server import FakeConfig, FakeEmpirioLabs
from motionflow.publish.fileserver import FileServer

API_KEY = "sk-empiriolabs-TESTKEY-7f3a9c"


@dataclass
class Service:
    """The fake service, the static host, and a project wired to them."""

    root: Path
    cache: Path
    fake: FakeEmpirioLabs
    static: FileServer
    env: dict[str, str] = field(default_factory=dict)

    def recipe(
        self,
        outfits: list[str],
        *,
        name: str = "paid",
        budget: float | None = 50.0,
        takes: int = 1,
        extra: str = "",
    ) -> str:
        """Write ``paid.yaml``: one generation per outfit, straight from the sample assets."""
        budget_line = f"budget: {{max_usd: {budget}}}\n" if budget is not None else ""
        text = (
            "version: 1\n"
            f"name: {name}\n"
            "provider: empiriolabs\n"
            f"{budget_line}"
            f"publish: {{kind: static, dir: published, base_url: '{self.static.url}'}}\n"
            f"matrix:\n  outfit: {json.dumps(outfits)}\n"
            "inputs:\n  hero: assets/hero.png\n  dance: assets/dance.mp4\n"
            "stages:\n"
            "  take:\n"
            "    uses: kling.motion_control\n"
            f"    takes: {takes}\n"
            "    with:\n"
            "      image: ${inputs.hero}\n"
            "      video: ${inputs.dance}\n"
            "      prompt: 'The character wears a {{ outfit }} and dances.'\n"
            "      character_orientation: video\n"
            "      duration: 3\n"
            f"{extra}"
            "outputs: [take]\n"
        )
        path = self.root / f"{name}.yaml"
        path.write_text(text, encoding="utf-8")
        return path.name

    def command(self, *args: str) -> list[str]:
        """The argv of ``motionflow ARGS``."""
        return [sys.executable, "-c", "from motionflow.cli import main; main()", *args]

    def full_env(self, env: dict[str, str] | None = None) -> dict[str, str]:
        """The environment the CLI runs with."""
        return {**os.environ, **self.env, **(env or {})}

    def cli(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``motionflow ARGS`` in the project and wait."""
        return subprocess.run(
            self.command(*args),
            cwd=self.root,
            env=self.full_env(env),
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )

    def popen(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        """Start ``motionflow ARGS`` without waiting."""
        return subprocess.Popen(
            self.command(*args),
            cwd=self.root,
            env=self.full_env(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run_json(
        self, *args: str, recipe: str = "paid.yaml", env: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """``motionflow run RECIPE ARGS --json``: the summary, plus ``_exit`` and ``_stderr``."""
        proc = self.cli("run", recipe, *args, "--json", env=env)
        assert "Traceback" not in proc.stderr, proc.stderr
        data: dict[str, Any] = json.loads(proc.stdout) if proc.stdout.strip() else {}
        data["_exit"] = proc.returncode
        failures = [f"{f['instance']}: {f['error']}" for f in data.get("failures", [])]
        data["_stderr"] = "\n".join([proc.stderr, *failures])  # what the user reads
        return data

    def jobs(self, *args: str) -> list[dict[str, Any]]:
        """``motionflow jobs --json``."""
        proc = self.cli("jobs", "--json", *args)
        assert proc.returncode == 0, proc.stderr
        rows: list[dict[str, Any]] = json.loads(proc.stdout)
        return rows

    def submits_by_prompt(self) -> Counter[str]:
        """Accepted (billed) submits per prompt: one prompt per generation in these recipes."""
        return Counter(body["prompt"] for body in self.fake.submissions)


def new_project(tmp_path: Path) -> tuple[Path, Path]:
    """A project folder with the sample assets, and a cache folder beside it."""
    import conftest

    project = conftest.new_project(tmp_path)
    return project.root, project.cache


def make_service(root: Path, cache: Path, **config: Any) -> Service:
    """Start the fake server (fast clock, no rendering) and the static host for ``root``."""
    faults = config.pop("faults", Faults())
    settings: dict[str, Any] = {
        "api_key": API_KEY,
        "time_scale": 0.02,
        "render": False,
        "faults": faults,
        **config,
    }
    fake = FakeEmpirioLabs(FakeConfig(**settings))
    fake.start()
    static = FileServer(root / "published")
    static.start()
    env = {
        "MOTIONFLOW_CACHE": str(cache),
        "EMPIRIOLABS_API_KEY": API_KEY,
        "EMPIRIOLABS_BASE_URL": fake.url,
        "EMPIRIOLABS_POLL_SECONDS": "0.05",
        # a 404 or a failed download is retried this long before the job is left pending
        "EMPIRIOLABS_NOT_FOUND_PATIENCE": "5",
        # the fake server has no rate limit unless a test sets one; polls at 50 ms would
        # otherwise spend the real 50-a-minute budget in a second
        "EMPIRIOLABS_RATE_LIMIT": "100000",
    }
    return Service(root, cache, fake, static, env)
