"""The worker side of the Dask backend: what a task carries and what a worker does with it.

A task carries digests, never paths (:class:`BlobRef`); the worker finds each input in its own
view of the shared cache, runs the stage kind in a private folder under ``tmp/``, commits file
outputs into ``blobs/`` and returns digests. :mod:`motionflow.engine.dask` (the coordinator
side) explains the whole arrangement. Nothing here imports ``distributed``.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import shutil
import socket
import sys
import sysconfig
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from motionflow.artifacts import FileArtifact
from motionflow.errors import StageError
from motionflow.stages.base import Stage, StageContext, StageResult

__all__ = ["BlobRef", "Job", "import_root", "run_on_worker", "ship", "swap"]


# -- parameters on the wire: digests, never paths ----------------------------------------------


@dataclass(frozen=True)
class BlobRef:
    """A file parameter as it travels to a worker: its content digest and extension only."""

    digest: str
    ext: str


def swap(value: Any, change: Any) -> Any:
    """``value`` with every FileArtifact/BlobRef replaced by ``change(it)``, containers rebuilt."""
    if isinstance(value, FileArtifact | BlobRef):
        return change(value)
    if isinstance(value, BaseModel):
        fields = {name: swap(getattr(value, name), change) for name in type(value).model_fields}
        extras = {k: swap(v, change) for k, v in (value.model_extra or {}).items()}
        # no validation: the coordinator validated these values, only file references change
        return type(value).model_construct(value.model_fields_set, **fields, **extras)
    if isinstance(value, list):
        return [swap(v, change) for v in value]
    if isinstance(value, tuple):
        return tuple(swap(v, change) for v in value)
    if isinstance(value, dict):
        return {k: swap(v, change) for k, v in value.items()}
    return value


def ship(artifact: FileArtifact | BlobRef) -> BlobRef:
    return BlobRef(artifact.digest, artifact.ext)


def import_root(call: str) -> str | None:
    """The sys.path folder the coordinator imported ``call``'s module from, if a project one."""
    module = sys.modules.get(call.partition(":")[0])
    origin = getattr(module, "__file__", None)
    if not origin:
        return None
    installed = {
        str(Path(p).resolve())
        for key in ("stdlib", "platstdlib", "purelib", "platlib")
        if (p := sysconfig.get_paths().get(key))
    }
    source = Path(origin).resolve()
    for entry in sys.path:
        folder = (Path(entry) if entry else Path.cwd()).resolve()
        if source.is_relative_to(folder):
            return None if str(folder) in installed else str(folder)
    return None


@dataclass
class Job:
    """Everything a worker needs for one instance; pickled to the worker."""

    cache_root: str
    kind: str
    impl: Stage | None  # only for a stage object the worker's registry would not give back
    params: Any  # the validated model, with BlobRef in place of every FileArtifact
    stage: str
    provider: str
    take: int
    label: str
    labels: list[str]
    key: str
    recipe: str
    environment: dict[str, Any] | None  # the coordinator's (part of the key), to compare
    import_paths: list[str]


def _no_emit(event: Any) -> None:
    del event  # progress events are the coordinator's (InstanceStarted/Finished)


# -- the worker side -----------------------------------------------------------------------------


def _commit(cache: Any, src: Path) -> tuple[str, int]:
    """Hash ``src`` (a file under the cache's ``tmp/``) and rename it into ``blobs/``."""
    import stat as stat_mod

    from motionflow.cache.store import writing
    from motionflow.keys import digest_file

    with src.open("rb+") as handle:  # durable before it is visible to other machines
        os.fsync(handle.fileno())
    digest = digest_file(src)
    size = src.stat().st_size
    final: Path = cache.blob_path(digest)
    with writing(cache.root, "store a file in the cache"):
        if final.is_file():
            src.unlink()
        else:
            final.parent.mkdir(parents=True, exist_ok=True)
            src.chmod(stat_mod.S_IRUSR | stat_mod.S_IRGRP | stat_mod.S_IROTH)
            src.replace(final)
    return digest, size


def _check_environment(impl: Stage, job: Job, params: Any) -> None:
    """Refuse to make bytes the key does not describe (another ffmpeg, an edited function)."""
    if job.environment is None:
        return
    mine = impl.environment(params, job.provider)
    call = getattr(params, "call", None)
    if mine != job.environment and job.kind == "python" and isinstance(call, str):
        # This long-lived worker imported the module before it was edited (its memo re-reads
        # the file at most once a second): load the new code, not just the new source.
        import importlib

        from motionflow.stages import python as python_stage

        python_stage._DIGESTS.pop(call, None)
        module = sys.modules.get(call.partition(":")[0])
        if module is not None:
            importlib.reload(module)
        mine = impl.environment(params, job.provider)
    if mine != job.environment:
        msg = (
            f"the worker on {socket.gethostname()} would not make what the cache key describes:"
            f" its environment is {mine}, the coordinator's {job.environment}; install the same"
            " versions (and the same project files) on every worker"
        )
        raise StageError(msg)


def _run_job(job: Job) -> dict[str, Any]:
    from motionflow.cache.store import Cache
    from motionflow.stages.registry import get_stage

    for folder in job.import_paths:
        if folder not in sys.path:
            sys.path.insert(0, folder)
    cache = Cache(Path(job.cache_root))

    def resolve(ref: FileArtifact | BlobRef) -> FileArtifact:
        path = cache.blob_path(ref.digest)
        if not path.is_file():
            msg = (
                f"input {ref.digest[:19]}…{ref.ext} is not in the cache {job.cache_root!r} as"
                f" seen by the worker on {socket.gethostname()} (no {path}); with a remote"
                " scheduler the cache folder must be a shared filesystem mounted at the same"
                " path on every machine"
            )
            raise StageError(msg)
        return FileArtifact(ref.digest, path, ref.ext)

    try:
        impl = job.impl if job.impl is not None else get_stage(job.kind)
        params = swap(job.params, resolve)
        _check_environment(impl, job, params)
        with cache.workdir() as workdir:
            ctx = StageContext(
                workdir,
                job.stage,
                job.provider,
                job.take,
                job.label,
                _no_emit,
                job.labels,
                key=job.key,
                recipe=job.recipe,
            )
            result: StageResult = asyncio.run(impl.run(params, ctx))
            outputs: dict[str, Any] = {}
            for name, value in result.outputs.items():
                if impl.outputs.get(name) != "file":
                    outputs[name] = {"value": value}  # the executor rejects undeclared names
                    continue
                path = Path(value)
                if not path.resolve().is_relative_to(workdir.resolve()):  # copy, then commit
                    copy = workdir / f".copy-{uuid.uuid4().hex}{path.suffix}"
                    shutil.copyfile(path, copy)
                    path = copy
                digest, size = _commit(cache, path)
                outputs[name] = {"file": digest, "size": size, "ext": Path(value).suffix.lower()}
        return {"outputs": outputs, "meta": result.meta}
    finally:
        cache.close()


def run_on_worker(job: Job) -> dict[str, Any]:
    """The Dask task: run one instance; a stage's failure comes back as ``{"error": exc}``.

    Failures are returned rather than raised so that Dask's ``retries`` never re-run a stage
    that failed on its own (the local executor does not either).
    """
    try:
        return _run_job(job)
    except Exception as exc:  # noqa: BLE001 - handed back to the coordinator
        try:
            pickle.dumps(exc)
        except Exception:  # noqa: BLE001 - an exception that cannot travel: keep its words
            exc = StageError(f"{type(exc).__name__}: {exc}")
        return {"error": exc}


# -- the coordinator side ------------------------------------------------------------------------
