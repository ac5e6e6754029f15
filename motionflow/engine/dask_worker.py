"""The worker side of the Dask backend: what a task carries and what a worker does with it.

A task carries digests, never paths (:class:`BlobRef`); the worker finds each input in its own
cache (a shared filesystem, or its own disk filled from the team's remote by digest, verified),
runs the stage kind in a private folder under ``tmp/``, commits file outputs into ``blobs/``
(and uploads them to the remote, if there is one) and returns digests.
:mod:`motionflow.engine.dask` (the coordinator side) explains the whole arrangement. Nothing
here imports ``distributed``.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import shutil
import socket
import sys
import sysconfig
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from motionflow.artifacts import FileArtifact
from motionflow.cache.objects import RemoteSpec
from motionflow.errors import StageError
from motionflow.stages.base import Stage, StageContext, StageResult

__all__ = [
    "BlobRef",
    "Job",
    "fetch_from_remote",
    "import_root",
    "remote_blob",
    "run_on_worker",
    "ship",
    "swap",
    "upload_to_remote",
]


# -- parameters on the wire: digests, never paths ----------------------------------------------


@dataclass(frozen=True)
class BlobRef:
    """A file parameter as it travels to a worker: its content digest, extension and size.

    The size (known to the coordinator, which holds the blob) bounds and checks a download
    from the remote cache; it is None only when nobody needs it.
    """

    digest: str
    ext: str
    size: int | None = None


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


def remote_blob(digest: str) -> str:
    """The name of a blob on the remote cache, under its prefix: ``v1/blobs/<64 hex>``."""
    from motionflow.cache.remote_check import BLOBS

    return BLOBS + digest.removeprefix("blake3:")


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
    #: The team's remote cache (bucket, prefix, endpoint; never credentials), when blobs travel
    #: through it rather than a shared filesystem.
    remote: RemoteSpec | None = None


def _no_emit(event: Any) -> None:
    del event  # progress events are the coordinator's (InstanceStarted/Finished)


# -- the worker side -----------------------------------------------------------------------------

#: One ObjectStore per remote in this worker process, made on first use; credentials come
#: from this machine's environment (boto3's chain), never from the coordinator.
_STORES: dict[RemoteSpec, Any] = {}
_STORES_LOCK = threading.Lock()


def _store(spec: RemoteSpec) -> Any:
    with _STORES_LOCK:
        store = _STORES.get(spec)
        if store is None:
            from motionflow.cache.objects import ObjectStore

            store = _STORES[spec] = ObjectStore(spec)
        return store


def fetch_from_remote(store: Any, cache: Any, digest: str, size: int | None, what: str) -> Path:
    """Download blob ``digest`` from the remote into ``cache`` (``tmp/``, then ``blobs/``),
    its size and blake3 digest verified; returns its path in ``cache``.

    Raises:
        StageError: the remote lacks it, or holds other bytes under its name (or failed).
    """
    from motionflow.cache.objects import RemoteError
    from motionflow.cache.remote_check import MAX_BLOB_BYTES, Damaged, fetch_blob

    name = remote_blob(digest)
    try:
        if size is None:  # pragma: no cover - the coordinator always sends the size
            info = store.head(name)
            size = info.size if info is not None and 0 <= info.size <= MAX_BLOB_BYTES else 0
        fetch_blob(store, cache, digest, size)
    except Damaged as exc:
        msg = (
            f"{what} {digest} cannot be taken from the remote cache {store.url}: {exc}; remove"
            " that object from the bucket, and the next run uploads a good copy"
        )
        raise StageError(msg) from None
    except RemoteError as exc:
        msg = f"{what} {digest} could not be downloaded from the remote cache: {exc}"
        raise StageError(msg) from exc
    path: Path = cache.blob_path(digest)
    return path


def upload_to_remote(store: Any, digest: str, size: int, path: Path, what: str) -> None:
    """Put blob ``digest`` (the file ``path``, ``size`` bytes) on the remote, unless it is there.

    Raises:
        StageError: the store failed.
    """
    from motionflow.cache.objects import RemoteError

    name = remote_blob(digest)
    try:
        info = store.head(name)
        if info is None or info.size != size:
            store.upload(name, path)
    except RemoteError as exc:
        msg = f"{what} {digest} could not be uploaded to the remote cache: {exc}"
        raise StageError(msg) from exc


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
    store: Any = None

    def resolve(ref: FileArtifact | BlobRef) -> FileArtifact:
        path = cache.blob_path(ref.digest)
        if not path.is_file() and store is not None:
            size = ref.size if isinstance(ref, BlobRef) else None
            path = fetch_from_remote(store, cache, ref.digest, size, "the input")
        if not path.is_file():
            msg = (
                f"input {ref.digest[:19]}…{ref.ext} is not in the cache {job.cache_root!r} as"
                f" seen by the worker on {socket.gethostname()} (no {path}); with a remote"
                " scheduler the cache folder must be a shared filesystem mounted at the same"
                " path on every machine, or blobs travel through a remote cache (--remote)"
            )
            raise StageError(msg)
        return FileArtifact(ref.digest, path, ref.ext)

    try:
        store = _store(job.remote) if job.remote is not None else None
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
                if store is not None:  # the coordinator (and other workers) take it from there
                    where = cache.blob_path(digest)
                    upload_to_remote(store, digest, size, where, f"output {name!r}")
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
