"""The Dask backend: a cluster makes the same bytes as this process (through a shared disk or
an S3 remote), survives a lost worker, and refuses what it cannot do (an unreachable scheduler,
an input missing from its cache, a blob the remote corrupted)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Project, new_project
from s3rig import use_fake_aws

from motionflow import load_recipe
from motionflow.cache.objects import parse_remote
from motionflow.cache.store import Cache
from motionflow.engine import RunResult, execute
from motionflow.errors import UsageError
from motionflow.events import InstanceStarted
from motionflow.keys import digest_file
from motionflow.stages import python as python_stage

distributed = pytest.importorskip("distributed")

from motionflow.engine.dask import DaskBackend, open_backend  # noqa: E402

pytestmark = [
    pytest.mark.slow,
]

SWEEP = """\
version: 1
name: sweep
provider: simulate
matrix:
  outfit: [red jacket, white hoodie]
  fps: [4, 5, 6, 7, 8, 9, 10, 11, 12, 13]
inputs: {hero: assets/hero.png, dance: assets/dance.mp4}
stages:
  still: {uses: image.prepare, with: {src: "${inputs.hero}", fit: pad}}
  clip:
    uses: video.prepare
    with: {src: "${inputs.dance}", start: 0, duration: 3, orientation: video}
  prompt: {uses: prompt, with: {template: "A dancer in a {{ outfit }}."}}
  take:
    uses: kling.motion_control
    with:
      image: ${stages.still.image}
      video: ${stages.clip.video}
      prompt: ${stages.prompt.text}
      duration: 3
      character_orientation: video
  gif: {uses: video.gif, with: {src: "${stages.clip.video}", duration: 1, width: 96, fps: "{{ fps }}"}}
  stamp: {uses: python, with: {call: "stamps:stamp", src: "${stages.gif.gif}", word: "{{ fps }}"}}
outputs: [take, gif, stamp]
"""

STAMPS = """\
import hashlib
import time
from pathlib import Path


def stamp(src, word, outdir):
    time.sleep(0.2)  # long enough to be caught running when a worker is killed
    data = Path(src).read_bytes()
    out = Path(outdir) / "stamp.txt"
    out.write_text(f"{word}:{len(data)}:{hashlib.sha256(data).hexdigest()}\\n")
    return out


def constant():
    return "base"
"""


@pytest.fixture(scope="module")
def worker_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Fake AWS credentials in os.environ for the module, inherited by the worker processes."""
    nowhere = tmp_path_factory.mktemp("aws")
    with pytest.MonkeyPatch.context() as patch:
        # credentials never travel with a task: workers take them from their environment,
        # so they are set before the cluster's processes start
        use_fake_aws(patch, nowhere)
        yield


@pytest.fixture(scope="module")
def cluster(worker_env: None) -> Iterator[Any]:
    """Two worker processes for the whole module (starting them costs seconds)."""
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        silence_logs=logging.CRITICAL,
    ) as local:
        yield local


def _sweep(project: Project) -> Path:
    project.write("stamps.py", STAMPS)
    return project.write("sweep.yaml", SWEEP)


def _execute(project: Project, recipe: Path, backend: Any = None, **kwargs: Any) -> RunResult:
    cache = Cache(project.cache)
    try:
        from motionflow.plan import make_plan

        plan = make_plan(load_recipe(recipe), cache)

        async def go() -> RunResult:
            try:
                return await execute(plan, cache, backend=backend, **kwargs)
            finally:
                if backend is not None:
                    await backend.aclose()

        return asyncio.run(go())
    finally:
        cache.close()


def _media(project: Project, name: str) -> dict[str, str]:
    """blake3 of the free stages' output files under out/<name>/.

    Receipts hold times, and a simulated generation is rendered afresh by each run's fake
    service, so those are left out; what the workers made is compared byte for byte.
    """
    root = project.out(name)
    return {
        str(p.relative_to(root)): digest_file(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name in ("gif.gif", "stamp.txt")
    }


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunResult, dict[str, str]]:
    """The sweep run by this process: what a cluster must reproduce."""
    project = new_project(tmp_path_factory.mktemp("local"))
    result = _execute(project, _sweep(project))
    assert result.exit_code == 0, result.failures
    return result, _media(project, "sweep")


def test_a_cluster_makes_the_same_bytes_and_submits_nothing_more(
    cluster: Any, local_sweep: tuple[RunResult, dict[str, str]], tmp_path: Path
) -> None:
    local, expected = local_sweep
    project = new_project(tmp_path)
    backend = open_backend(f"dask://{cluster.scheduler_address}", cache_root=project.cache)
    assert "tcp://" in repr(backend) and not backend.owns_cluster
    result = _execute(project, _sweep(project), backend, jobs=4)
    assert result.exit_code == 0, result.failures
    assert len(expected) == 40  # 20 gifs and 20 stamps
    assert _media(project, "sweep") == expected
    assert result.jobs_submitted == local.jobs_submitted == 2  # one generation per outfit
    assert result.executed == local.executed


def test_a_missing_input_blob_fails_only_that_instance(cluster: Any, project: Project) -> None:
    project.write("stamps.py", STAMPS)
    recipe = project.write(
        "two.yaml",
        """\
        version: 1
        name: two
        inputs: {hero: assets/hero.png}
        stages:
          still: {uses: image.prepare, with: {src: "${inputs.hero}"}}
          word: {uses: python, with: {call: "stamps:constant"}}
        outputs: [still, word]
        """,
    )
    # The workers see the cache at another path, where the hero image's blob is not.
    elsewhere = project.root.parent / "worker-cache"
    backend = DaskBackend(
        cluster.scheduler_address, cache_root=project.cache, worker_cache_root=elsewhere
    )
    result = _execute(project, recipe, backend)
    assert (result.executed, result.failed) == (1, 1), result.failures
    ((label, message),) = result.failures
    assert label.startswith("still")
    assert "is not in the cache" in message and str(elsewhere) in message
    assert "shared filesystem" in message


@pytest.fixture(scope="module")
def moto_endpoint(worker_env: None) -> Iterator[str]:
    """One moto S3 server on a free loopback port, reached by this process and the workers."""
    pytest.importorskip("moto", reason="install the dev extra: pip install -e '.[dev]'")
    from s3rig import moto_endpoint as endpoint

    with endpoint() as url:
        yield url


@pytest.fixture
def bucket(moto_endpoint: str) -> Any:
    """A fresh bucket, as a boto3 Bucket resource."""
    import boto3

    name = f"mf-{uuid.uuid4().hex[:12]}"
    s3 = boto3.resource("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    return s3.create_bucket(Bucket=name)


def _remote(bucket: Any, endpoint: str) -> Any:
    return parse_remote(f"s3://{bucket.name}/team?endpoint={endpoint}")


def test_blobs_travel_through_the_remote_when_nothing_is_shared_on_disk(
    cluster: Any,
    local_sweep: tuple[RunResult, dict[str, str]],
    tmp_path: Path,
    bucket: Any,
    moto_endpoint: str,
) -> None:
    _, expected = local_sweep
    project = new_project(tmp_path)
    recipe = _sweep(project)
    # The workers keep their own cache: nothing of the coordinator's is on their disk.
    mine = tmp_path / "worker-cache"
    assert not mine.exists() and mine.resolve() != project.cache.resolve()
    remote = _remote(bucket, moto_endpoint)
    address = f"dask://{cluster.scheduler_address}"
    assert open_backend(address, cache_root=project.cache, remote=remote).remote == remote
    backend = DaskBackend(
        cluster.scheduler_address, cache_root=project.cache, worker_cache_root=mine, remote=remote
    )
    assert f"s3://{bucket.name}/team/" in repr(backend)
    result = _execute(project, recipe, backend, jobs=4)
    assert result.exit_code == 0 and result.failed == 0, result.failures
    assert _media(project, "sweep") == expected

    # Every input, every intermediate and every output went through the bucket, by digest.
    listed = {o.key: o.size for o in bucket.objects.all()}
    assert all(key.startswith("team/v1/blobs/") for key in listed), sorted(listed)  # no records
    inputs = {digest_file(project.root / "assets" / n) for n in ("hero.png", "dance.mp4")}
    for digest in inputs | set(expected.values()):
        assert f"team/v1/blobs/{digest.removeprefix('blake3:')}" in listed, digest
    made = Cache(mine)
    try:
        assert all(made.has_blob(d) for d in set(expected.values()))  # made on "their" disk
    finally:
        made.close()


def test_a_blob_corrupted_on_the_remote_fails_only_that_instance(
    cluster: Any, project: Project, tmp_path: Path, bucket: Any, moto_endpoint: str
) -> None:
    project.write("stamps.py", STAMPS)
    recipe = project.write(
        "two.yaml",
        """\
        version: 1
        name: two
        inputs: {hero: assets/hero.png}
        stages:
          still: {uses: image.prepare, with: {src: "${inputs.hero}"}}
          word: {uses: python, with: {call: "stamps:constant"}}
        outputs: [still, word]
        """,
    )
    hero = (project.root / "assets" / "hero.png").read_bytes()
    digest = digest_file(project.root / "assets" / "hero.png")
    # Same size, other bytes: the coordinator's HEAD takes it for the hero image's blob.
    bad = bytes(b ^ 0xFF for b in hero[:64]) + hero[64:]
    bucket.put_object(Key=f"team/v1/blobs/{digest.removeprefix('blake3:')}", Body=bad)
    backend = DaskBackend(
        cluster.scheduler_address,
        cache_root=project.cache,
        worker_cache_root=tmp_path / "worker-cache",
        remote=_remote(bucket, moto_endpoint),
    )
    result = _execute(project, recipe, backend)
    assert (result.executed, result.failed) == (1, 1), result.failures
    ((label, message),) = result.failures
    assert label.startswith("still")
    assert digest in message and f"s3://{bucket.name}/team/" in message
    assert "does not match its digest" in message, message
    assert not Cache(tmp_path / "worker-cache").has_blob(digest)  # nothing of it was kept


def test_losing_a_worker_changes_nothing_but_the_time(
    cluster: Any, local_sweep: tuple[RunResult, dict[str, str]], tmp_path: Path
) -> None:
    _, expected = local_sweep
    with distributed.Client(cluster.scheduler_address, set_as_default=False) as client:
        pids: dict[str, int] = client.run(os.getpid)
    assert len(pids) == 2
    project = new_project(tmp_path)
    lost: list[str] = []

    def reporter(event: Any) -> None:
        # Once a few post-processing instances have started, kill a worker that is busy
        # with one of ours: its task is lost with it and must be run again elsewhere.
        if lost or not isinstance(event, InstanceStarted) or event.stage != "stamp":
            return
        for address, state in list(cluster.scheduler.workers.items()):
            busy = [str(t.key) for t in state.processing if str(t.key).startswith("motionflow")]
            if busy and address in pids:
                os.kill(pids[address], signal.SIGKILL)
                lost.extend(busy)
                return

    backend = open_backend(f"dask://{cluster.scheduler_address}", cache_root=project.cache)
    result = _execute(project, _sweep(project), backend, jobs=4, reporter=reporter)
    assert lost, "no worker was busy when the stamps started"
    assert result.exit_code == 0 and result.failed == 0, result.failures
    assert _media(project, "sweep") == expected


def test_workers_run_the_edited_function_not_the_one_they_imported(
    cluster: Any, project: Project
) -> None:
    recipe = project.write(
        "said.yaml",
        """\
        version: 1
        name: said
        matrix: {n: [1, 2, 3, 4]}
        stages:
          say: {uses: python, with: {call: "sayer:say", n: "{{ n }}"}}
        outputs: [say]
        """,
    )
    body = (
        "from pathlib import Path\n\n\ndef say(n, outdir):\n    out = Path(outdir) / 'said.txt'\n"
    )
    said: list[set[str]] = []
    for word in ("before", "after"):  # edited at once: within the stage's 1 s memo
        project.write("sayer.py", body + f"    out.write_text('{word}')\n    return out\n")
        # Each `motionflow run` is a new coordinator process; the workers live on.
        python_stage._DIGESTS.clear()
        backend = open_backend(f"dask://{cluster.scheduler_address}", cache_root=project.cache)
        result = _execute(project, recipe, backend, jobs=4)
        assert result.exit_code == 0 and result.executed == 4, result.failures
        said.append({p.read_text() for p in project.out("said").rglob("say.txt")})
    assert said == [{"before"}, {"after"}]


def test_cancelling_the_run_cancels_the_remote_tasks(cluster: Any, project: Project) -> None:
    # Last of the tests on the shared cluster: a cancelled task's thread sleeps on (a thread
    # cannot be stopped), but its result is dropped and the scheduler forgets it at once.
    project.write("naps.py", "import time\n\n\ndef nap(n):\n    time.sleep(3)\n    return n\n")
    recipe = project.write(
        "naps.yaml",
        """\
        version: 1
        name: naps
        matrix: {n: [1, 2]}
        stages:
          nap: {uses: python, with: {call: "naps:nap", n: "{{ n }}"}}
        outputs: [nap]
        """,
    )
    scheduler = cluster.scheduler
    cache = Cache(project.cache)
    backend = open_backend(f"dask://{cluster.scheduler_address}", cache_root=project.cache)
    try:
        from motionflow.plan import make_plan

        plan = make_plan(load_recipe(recipe), cache)

        async def go() -> None:
            run = asyncio.create_task(execute(plan, cache, backend=backend, jobs=2))
            began = time.monotonic()
            while not any(t.key.startswith("motionflow-nap") for t in scheduler.tasks.values()):
                assert time.monotonic() - began < 30, "nothing reached the cluster"
                await asyncio.sleep(0.05)
            run.cancel()
            with pytest.raises(asyncio.CancelledError):
                await run
            while any(str(k).startswith("motionflow-nap") for k in scheduler.tasks):
                assert time.monotonic() - began < 20, "the remote tasks were not cancelled"
                await asyncio.sleep(0.05)
            await backend.aclose()
            await backend.aclose()  # idempotent

        asyncio.run(go())
    finally:
        cache.close()
    assert "closed" in repr(backend)


def test_a_backend_of_its_own_starts_and_stops_a_local_cluster(project: Project) -> None:
    project.write("stamps.py", STAMPS)
    recipe = project.write(
        "one.yaml",
        """\
        version: 1
        name: one
        stages:
          word: {uses: python, with: {call: "stamps:constant"}}
        outputs: [word]
        """,
    )
    team = parse_remote("s3://team-bucket/motionflow")
    backend = open_backend("dask", cache_root=project.cache, workers=1, remote=team)
    assert backend.owns_cluster and "LocalCluster(1 workers)" in repr(backend)
    assert backend.remote is None  # one machine, one disk: blobs need no bucket
    cluster = backend._cluster
    result = _execute(project, recipe, backend)  # closes it
    assert result.exit_code == 0 and result.executed == 1
    assert cluster.status.name == "closed" and "closed" in repr(backend)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_an_unreachable_scheduler_or_a_bad_spec_is_a_usage_error(tmp_path: Path) -> None:
    address = f"127.0.0.1:{_free_port()}"
    with pytest.raises(UsageError, match=address) as caught:
        open_backend(f"dask://{address}", cache_root=tmp_path)
    assert "dask scheduler" in str(caught.value)
    for spec in ("dusk", "dask://", "ray://x:1"):
        with pytest.raises(UsageError, match="dask://HOST:PORT"):
            open_backend(spec, cache_root=tmp_path)


def test_without_distributed_the_error_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    with pytest.raises(UsageError, match=r"pip install 'motionflow\[dask\]'"):
        open_backend("dask", cache_root=tmp_path)
