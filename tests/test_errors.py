"""Third-party failures reach the user as motionflow errors, with the right exit codes."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from motionflow import errors
from motionflow.cache.store import Cache
from motionflow.fetch import fetch_input
from motionflow.media.probe import probe
from motionflow.recipe.loader import load_recipe
from motionflow.recipe.schema import RemoteInput
from motionflow.recipe.templating import TemplateProblem, render_template
from motionflow.stages.base import StageContext
from motionflow.stages.python import PythonParams, PythonStage


def test_exit_codes() -> None:
    expected = {
        errors.UsageError: 2,
        errors.RecipeError: 2,
        errors.InputError: 2,
        errors.MediaError: 2,
        errors.ToolNotFoundError: 2,
        errors.CacheError: 2,
        errors.StageError: 1,
        errors.ProviderError: 1,
        errors.PublishError: 1,
        errors.BudgetError: 3,
    }
    assert set(expected) == set(errors.MotionflowError.__subclasses__()) | {
        errors.ToolNotFoundError,
        errors.PublishError,
    }
    for cls, code in expected.items():
        assert cls.exit_code == code, cls


def test_yaml_and_pydantic_become_recipe_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nstages: [\n")
    with pytest.raises(errors.RecipeError) as info:
        load_recipe(bad)
    assert info.value.diagnostics[0].line >= 2
    bad.write_text("version: one\nstages: {}\n")
    with pytest.raises(errors.RecipeError, match="version"):
        load_recipe(bad)


def test_jinja_errors_become_template_problems() -> None:
    with pytest.raises(TemplateProblem, match="syntax"):
        render_template("{{ a ", {})
    with pytest.raises(TemplateProblem, match="sandbox forbids"):
        render_template("{{ ''.__class__.__mro__ }}", {})


def test_unusable_cache_dir_is_a_cache_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(errors.CacheError, match="--cache DIR"):
        Cache(blocker).put_result("k", {"outputs": {}})


def test_network_failure_is_an_input_error(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: connection refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    spec = RemoteInput(url=f"http://127.0.0.1:{port}/x.mp4")
    with pytest.raises(errors.InputError, match="cannot download"):
        asyncio.run(fetch_input("dance", spec, Cache(tmp_path / "c")))


def test_undecodable_media_is_a_media_error(tmp_path: Path) -> None:
    fake = tmp_path / "clip.mp4"
    fake.write_text("this is text")
    with pytest.raises(errors.MediaError, match=r"clip\.mp4"):
        probe(fake)


def test_user_code_failure_is_a_stage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "errsteps.py").write_text("def fail():\n    raise KeyError('gone')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    ctx = StageContext(tmp_path, "s", "simulate", 0, "s[default]", lambda _e: None)
    with pytest.raises(errors.StageError, match="errsteps:fail raised KeyError"):
        asyncio.run(PythonStage().run(PythonParams(call="errsteps:fail"), ctx))
