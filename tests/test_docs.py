"""The generated stage reference matches the stage models."""

from __future__ import annotations

from conftest import REPO

from motionflow.stages.reference import render_reference
from motionflow.stages.registry import known_kinds


def test_stage_reference_is_up_to_date() -> None:
    committed = (REPO / "docs" / "stage-reference.md").read_text(encoding="utf-8")
    assert committed == render_reference(), "run: python scripts/gen_stage_reference.py"


def test_every_builtin_kind_is_documented() -> None:
    text = render_reference()
    for kind in known_kinds():
        assert f"## `{kind}`" in text
