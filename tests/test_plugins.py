"""Third-party stage kinds load from the ``motionflow.stages`` entry-point group, untouched."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PLUGIN = '''\
"""A third-party stage kind: upper-cases text."""

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from motionflow.stages import BaseStage


class UpperParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str


class UpperStage(BaseStage):
    kind: ClassVar[str] = "demo.upper"
    version: ClassVar[str] = "1"
    Params: ClassVar[type[BaseModel]] = UpperParams
    outputs: ClassVar[dict[str, Any]] = {"text": "value"}

    async def run(self, params, ctx):
        from motionflow.stages import StageResult

        return StageResult({"text": params.text.upper()})
'''

RECIPE = """\
version: 1
name: plugged
stages:
  loud: {uses: demo.upper, with: {text: "quiet words"}}
  typo: {uses: demo.uper, with: {text: "x"}}
outputs: [loud]
"""


def test_entry_point_stage_runs_and_is_suggested(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "mf_demo_plugin").mkdir(parents=True)
    (site / "mf_demo_plugin" / "__init__.py").write_text(PLUGIN)
    dist = site / "mf_demo_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mf-demo-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[motionflow.stages]\ndemo.upper = mf_demo_plugin:UpperStage\n"
    )
    project = tmp_path / "proj"
    project.mkdir()
    (project / "motionflow.toml").write_text("")
    recipe = project / "plugged.yaml"
    recipe.write_text(RECIPE)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
        "MOTIONFLOW_CACHE": str(tmp_path / "cache"),
    }
    cmd = [sys.executable, "-c", "from motionflow.cli import main; main()", "run", str(recipe)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "unknown stage kind 'demo.uper'; did you mean 'demo.upper'?" in proc.stderr
    recipe.write_text(RECIPE.split("  typo:", maxsplit=1)[0] + "outputs: [loud]\n")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert (project / "out/plugged/default/loud.txt").read_text() == "QUIET WORDS\n"
