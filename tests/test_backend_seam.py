"""The executor's seams: a backend runs free instances, paid jobs come from the caller."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from conftest import TINY_RECIPE, Project

from motionflow import load_recipe
from motionflow.cache.store import Cache
from motionflow.engine import RunResult, execute
from motionflow.engine.backend import Backend, LocalBackend
from motionflow.engine.generation import Generations, open_generations
from motionflow.graph import Instance
from motionflow.plan import Plan, make_plan
from motionflow.providers.options import GenerationOptions
from motionflow.providers.simulate import fake_service
from motionflow.stages.base import StageContext, StageResult

FREE_RECIPE = """\
version: 1
name: free
vars: {style: "a dancer"}
matrix: {move: [spin, jump]}
stages:
  prompt: {uses: prompt, with: {template: "{{ style }} doing a {{ move }}"}}
outputs: [prompt]
"""


class CountingBackend:
    """A stand-in for a distributed backend: runs locally, remembers what it was given."""

    def __init__(self) -> None:
        self.kinds: list[str] = []
        self.closed = False

    async def run_instance(self, instance: Instance, params: Any, ctx: StageContext) -> StageResult:
        assert ctx.session is None  # paid work never reaches a backend
        self.kinds.append(instance.impl.kind)
        return await LocalBackend().run_instance(instance, params, ctx)

    async def aclose(self) -> None:
        self.closed = True


def _run(project: Project, name: str, text: str, **kwargs: Any) -> tuple[RunResult, Plan]:
    project.write(name, text)
    recipe = load_recipe(project.root / name)
    cache = Cache(project.cache)
    try:
        planned = make_plan(recipe, cache)
        return asyncio.run(execute(planned, cache, **kwargs)), planned
    finally:
        cache.close()


def test_the_executor_module_keeps_its_names() -> None:
    from motionflow import executor

    assert executor.execute is execute and executor.RunResult is RunResult
    assert isinstance(LocalBackend(), Backend) and isinstance(CountingBackend(), Backend)


def test_free_instances_run_on_the_given_backend_which_the_caller_closes(
    project: Project,
) -> None:
    backend = CountingBackend()
    result, _ = _run(project, "free.yaml", FREE_RECIPE, backend=backend)
    assert result.exit_code == 0 and result.executed == 2
    assert backend.kinds == ["prompt", "prompt"]
    assert not backend.closed  # given, not made: the caller's to close


@pytest.mark.slow
def test_paid_instances_stay_in_process_and_use_the_injected_generations(
    project: Project,
) -> None:
    made: list[Generations] = []

    def factory(plan: Plan, cache: Cache, emit: Any) -> Generations:
        generations = open_generations(plan, cache, emit, options=GenerationOptions(env={}))
        made.append(generations)
        return generations

    backend = CountingBackend()
    result, _ = _run(project, "tiny.yaml", TINY_RECIPE, backend=backend, generations=factory)
    assert result.exit_code == 0, result.failures
    assert result.jobs_submitted == 1 and result.spent_usd == 0.0
    assert "kling.motion_control" not in backend.kinds
    assert sorted(backend.kinds) == ["image.prepare", "prompt"]
    (generations,) = made
    assert generations.run_session is not None and generations.run_session.free


def test_a_run_without_generations_never_opens_a_session(project: Project) -> None:
    made: list[Generations] = []

    def factory(plan: Plan, cache: Cache, emit: Any) -> Generations:
        generations = open_generations(plan, cache, emit, options=GenerationOptions(env={}))
        made.append(generations)
        return generations

    result, _ = _run(project, "free.yaml", FREE_RECIPE, generations=factory)
    assert result.exit_code == 0
    assert len(made) == 1 and made[0].run_session is None and made[0].charged_usd == 0.0


def test_fake_service_serves_the_contract_until_the_block_ends() -> None:
    with fake_service(api_key="sk-empiriolabs-test", render=False) as url:
        assert url.startswith("http://127.0.0.1:")
        answer = httpx.get(
            f"{url}/v1/models/kling-v3-motion-control",
            headers={"Authorization": "Bearer sk-empiriolabs-test"},
        )
        assert answer.status_code == 200
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/v1/models/kling-v3-motion-control", timeout=2)
