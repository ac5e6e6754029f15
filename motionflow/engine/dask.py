"""Run free stage instances on a Dask cluster (``distributed``), through the backend seam.

::

    backend = open_backend("dask", cache_root=cache.root)              # a LocalCluster here
    backend = open_backend("dask://10.0.0.5:8786", cache_root=...)     # an existing scheduler
    try:
        result = await execute(plan, cache, backend=backend, jobs=await backend.connect() * 2)
    finally:
        await backend.aclose()

**Artifacts travel through the shared cache, by digest.** The coordinator sends a worker the
cache root and, for every :class:`~motionflow.artifacts.FileArtifact` in the parameters, only
its digest and extension (never the coordinator's path). The worker finds each input at
``Cache(root).blob_path(digest)`` and refuses the instance if the blob is not there (results
of earlier stages are blobs already; the coordinator copies a recipe input, a file of the
project, into ``blobs/`` once, checking its digest, before the first task that needs it). It runs
the stage kind in a private work folder under the cache's ``tmp/``, commits every file output
into ``blobs/`` (hashed, then renamed into place, so a blob appears whole or not at all) and
returns digests, sizes, extensions and values. Back on the coordinator each file output is
hard-linked (or copied) from its blob into ``ctx.workdir``, so the executor stores it exactly
as after a local run.

So with a remote scheduler the blobs travel one of two ways:

- **A shared filesystem** (NFS, CephFS, a bind mount...) mounted at the same path on the
  coordinator and on every worker holds the cache folder; nothing is copied.
- **The team's remote cache** (``remote=``, a :class:`~motionflow.cache.objects.RemoteSpec`:
  bucket, prefix, endpoint, never credentials). Before submitting a task the coordinator makes
  sure each input blob is on the remote, at ``v1/blobs/<64 hex>`` (a HEAD, an upload when it is
  absent or of another size; what is known to be there is remembered). A worker keeps its own
  local cache (``worker_cache_root``): an input it lacks is downloaded by digest into its
  ``tmp/``, its size and blake3 digest verified (:func:`~motionflow.cache.remote_check.fetch_blob`)
  before it is committed to ``blobs/``; anything else fails the instance. Each file output is
  committed to the worker's ``blobs/`` and uploaded to the remote, and a returned digest the
  coordinator's cache lacks is downloaded and verified the same way. Each worker process makes
  its own store on first use, with the credentials of its own environment (boto3's chain).
  Only blobs travel this way: records stay with the coordinator, and values come back in the
  task's result.

Either way every worker needs motionflow (and any third-party stage kinds) installed and the
recipe's project folder at the same path (``uses: python`` imports the function from there).
A ``LocalCluster`` shares this machine's disk, so it needs nothing.

Workers only touch ``blobs/`` and ``tmp/``: they never open the SQLite index (``index/``),
whose locking is not reliable over network filesystems; the coordinator alone writes records.

Paid instances never reach this backend (one account, one rate limiter, one journal stay in
the coordinator), so a worker lost mid-task costs nothing but time: the scheduler re-runs the
task elsewhere (``distributed.scheduler.allowed-failures`` times, default 3).

This is the only module that imports ``dask``/``distributed``; it does so lazily.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import threading
import uuid
from pathlib import Path
from typing import Any

from motionflow.artifacts import FileArtifact
from motionflow.cache.objects import RemoteSpec
from motionflow.engine.dask_worker import (
    BlobRef,
    Job,
    fetch_from_remote,
    import_root,
    run_on_worker,
    swap,
    upload_to_remote,
)
from motionflow.errors import InputError, StageError, UsageError
from motionflow.graph import Instance
from motionflow.stages.base import StageContext, StageResult

__all__ = ["DaskBackend", "open_backend"]

#: Seconds to wait for a scheduler before telling the user it cannot be reached.
CONNECT_TIMEOUT = 5.0

#: Re-runs of a task whose *wrapper* raised (stage failures are returned, not raised, and are
#: never retried). A task lost with its worker is re-run by the scheduler regardless, up to
#: ``distributed.scheduler.allowed-failures`` times.
TASK_RETRIES = 2

_INSTALL_HINT = "pip install 'motionflow[dask]'"
_SPECS = "'dask' (a local cluster of worker processes) or 'dask://HOST:PORT' (a running scheduler)"


def _require_distributed() -> Any:
    try:
        import distributed
    except ImportError as exc:
        msg = f"the dask executor needs the distributed package ({exc}); {_INSTALL_HINT}"
        raise UsageError(msg) from exc
    return distributed


def _normalise_address(address: str) -> str:
    text = address.strip()
    if "://" not in text:
        text = "tcp://" + text
    return text


def _probe(address: str, timeout: float) -> None:
    """Fail fast (UsageError) when nothing listens at a ``tcp://host:port`` address."""
    scheme, _, rest = address.partition("://")
    host, sep, port = rest.rpartition(":")
    if scheme not in ("tcp", "tls") or not sep or not port.isdigit():
        msg = f"cannot read the Dask scheduler address {address!r}; expected {_SPECS}"
        raise UsageError(msg)
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        msg = (
            f"cannot reach the Dask scheduler at {address} ({exc}); start one there"
            " (`dask scheduler`, plus `dask worker ADDRESS` on each machine) or use"
            " --executor dask for a local cluster"
        )
        raise UsageError(msg) from exc


class DaskBackend:
    """Runs free stage instances as Dask tasks (see the module docstring for the contract).

    Built from nothing (a ``LocalCluster`` of worker processes on this machine, closed by
    :meth:`aclose`) or from a scheduler address (``"host:8786"``, ``"tcp://host:8786"``; only
    the client is closed). The client is asynchronous and opened on first use in the running
    event loop, so the executor's loop is never blocked.

    Args:
        address: a running scheduler, or None to start a local cluster.
        cache_root: this machine's cache folder (the coordinator's).
        workers: worker processes of the local cluster (default: the CPU count).
        connect_timeout: seconds to wait for the scheduler.
        worker_cache_root: where the workers find the cache: the same shared folder mounted
            elsewhere, or (with ``remote``) each worker's own local cache; default
            ``cache_root``'s path.
        remote: the team's remote cache, through which blobs travel between this machine and
            the workers (by digest, verified on arrival); None for a shared filesystem. Only
            the spec is sent: each worker uses the credentials of its own environment.

    Raises:
        UsageError: distributed is not installed, or the scheduler cannot be reached.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        cache_root: Path,
        workers: int | None = None,
        connect_timeout: float = CONNECT_TIMEOUT,
        worker_cache_root: Path | None = None,
        remote: RemoteSpec | None = None,
    ) -> None:
        distributed = _require_distributed()
        self.cache_root = Path(cache_root).absolute()
        self.worker_cache_root = Path(worker_cache_root or self.cache_root)
        self.remote = remote
        self.connect_timeout = connect_timeout
        self._cluster: Any = None
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connecting: asyncio.Lock | None = None
        self._cancels: set[asyncio.Task[Any]] = set()
        self._closed = False
        self._cache: Any = None  # this machine's view of the cache (blobs only, no index)
        self._in_store: dict[str, int] = {}  # digests known to be blobs here, and their sizes
        self._store: Any = None  # the remote's ObjectStore, made on first use
        self._on_remote: set[str] = set()  # digests known to be on the remote
        self._lock = threading.Lock()
        self._gates: dict[str, threading.Lock] = {}  # one upload of a digest at a time
        if address is None:
            count = max(1, workers or os.cpu_count() or 1)
            try:
                self._cluster = distributed.LocalCluster(
                    n_workers=count,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=":0",
                    silence_logs=logging.ERROR,
                )
            except Exception as exc:  # e.g. RuntimeError("Nanny failed to start")
                msg = (
                    f"cannot start a local Dask cluster of {count} worker processes ({exc});"
                    " worker processes re-import the main script, so a script that starts one"
                    ' needs `if __name__ == "__main__":`; or run without --executor dask'
                )
                raise UsageError(msg) from exc
            self.address: str = self._cluster.scheduler_address
            self.workers: int | None = count
        else:
            self.address = _normalise_address(address)
            self.workers = None
            _probe(self.address, connect_timeout)

    def __repr__(self) -> str:
        where = f"LocalCluster({self.workers} workers)" if self.owns_cluster else "remote"
        state = "closed" if self._closed else ("connected" if self._client else "not connected")
        via = f", remote={self.remote.url!r}" if self.remote is not None else ""
        return (
            f"DaskBackend({self.address!r}, {where}, cache={str(self.cache_root)!r}{via}, {state})"
        )

    @property
    def owns_cluster(self) -> bool:
        """True when this backend started its cluster (and :meth:`aclose` stops it)."""
        return self.workers is not None

    async def _connected(self) -> Any:
        if self._closed:
            msg = f"{self!r} is closed"
            raise RuntimeError(msg)
        loop = asyncio.get_running_loop()
        if self._client is not None and self._loop is loop:
            return self._client
        if self._connecting is None or self._loop is not loop:
            self._connecting = asyncio.Lock()
            self._client, self._loop = None, loop  # a client serves the loop it was made in
        async with self._connecting:
            if self._client is None:
                client_class: Any = _require_distributed().Client
                try:
                    self._client = await client_class(
                        self.address,
                        asynchronous=True,
                        timeout=self.connect_timeout,
                        set_as_default=False,
                    )
                except (OSError, TimeoutError) as exc:
                    msg = (
                        f"cannot connect to the Dask scheduler at {self.address} ({exc}); is it"
                        " running, and reachable from here?"
                    )
                    raise UsageError(msg) from exc
        return self._client

    async def connect(self) -> int:
        """Connect now; returns the cluster's worker threads (tasks it runs at once)."""
        client = await self._connected()
        threads: dict[str, int] = await client.nthreads()
        return max(1, sum(threads.values()))

    def _blobs(self) -> Any:
        with self._lock:  # threads share it: one Cache, one hold on the cache's lock
            if self._cache is None:
                from motionflow.cache.store import Cache

                self._cache = Cache(self.cache_root)
            return self._cache

    def _objects(self) -> Any:
        with self._lock:
            if self._store is None:
                from motionflow.cache.objects import ObjectStore

                self._store = ObjectStore(self.remote) if self.remote is not None else None
            return self._store

    def _put_in_store(self, params: Any) -> dict[str, int]:
        """Make every file parameter a blob, so that workers find it by digest; their sizes.

        Results of earlier stages already are; a recipe input (a file in the project) is
        copied into ``blobs/`` once, and must still have the digest it was planned with. With
        a remote, each one is then put there too (:meth:`_put_on_remote`).
        """
        found: list[FileArtifact] = []

        def note(artifact: FileArtifact | BlobRef) -> FileArtifact | BlobRef:
            if isinstance(artifact, FileArtifact):
                found.append(artifact)
            return artifact

        swap(params, note)
        cache = self._blobs()
        sizes: dict[str, int] = {}
        for artifact in found:
            known = self._in_store.get(artifact.digest)
            if known is None and cache.has_blob(artifact.digest):
                with contextlib.suppress(OSError):
                    known = cache.blob_path(artifact.digest).stat().st_size
            if known is None:
                try:
                    digest, known = cache.store_file(Path(artifact.path))
                except OSError as exc:
                    msg = f"cannot read {str(artifact.path)!r} to send it to the workers: {exc}"
                    raise InputError(msg) from exc
                if digest != artifact.digest:
                    msg = (
                        f"{str(artifact.path)!r} changed while the recipe ran (planned as"
                        f" {artifact.digest[:19]}…, now {digest[:19]}…); run again"
                    )
                    raise InputError(msg)
            self._in_store[artifact.digest] = sizes[artifact.digest] = known
        if self.remote is not None:
            for digest, size in sizes.items():
                self._put_on_remote(digest, size)
        return sizes

    def _put_on_remote(self, digest: str, size: int) -> None:
        """Make sure blob ``digest`` is on the remote (once per digest, one thread at a time).

        Raises:
            StageError: the store failed.
        """
        with self._lock:
            if digest in self._on_remote:
                return
            gate = self._gates.setdefault(digest, threading.Lock())
        with gate:
            if digest in self._on_remote:
                return
            where = self._blobs().blob_path(digest)
            upload_to_remote(self._objects(), digest, size, where, "the input")
            with self._lock:
                self._on_remote.add(digest)
                self._gates.pop(digest, None)

    def _job(
        self, instance: Instance, params: Any, ctx: StageContext, sizes: dict[str, int]
    ) -> Job:
        from motionflow.stages.registry import get_stage

        kind = instance.impl.kind
        try:
            registered = get_stage(kind) is instance.impl
        except LookupError:
            registered = False
        try:
            environment: dict[str, Any] | None = instance.impl.environment(params, ctx.provider)
        except Exception:  # noqa: BLE001 - the worker then trusts its own
            environment = None
        call = getattr(params, "call", None)
        root = import_root(call) if kind == "python" and isinstance(call, str) else None
        return Job(
            cache_root=str(self.worker_cache_root),
            kind=kind,
            impl=None if registered else instance.impl,
            params=swap(params, lambda a: BlobRef(a.digest, a.ext, sizes.get(a.digest))),
            stage=ctx.stage,
            provider=ctx.provider,
            take=ctx.take,
            label=ctx.label,
            labels=list(ctx.labels),
            key=ctx.key,
            recipe=ctx.recipe,
            environment=environment,
            import_paths=[root] if root else [],
            remote=self.remote,
        )

    def _cancel(self, future: Any) -> None:
        with contextlib.suppress(Exception):
            pending = future.cancel()
            if asyncio.iscoroutine(pending) or isinstance(pending, asyncio.Future):
                task = asyncio.ensure_future(pending)
                self._cancels.add(task)
                task.add_done_callback(self._cancels.discard)

    async def run_instance(self, instance: Instance, params: Any, ctx: StageContext) -> StageResult:
        """Run ``instance`` on a worker and bring its file outputs into ``ctx.workdir``."""
        if instance.impl.paid:
            msg = f"{instance.label} is a paid stage: it must run in the coordinator, never on Dask"
            raise RuntimeError(msg)
        client = await self._connected()
        sizes = await asyncio.to_thread(self._put_in_store, params)
        job = self._job(instance, params, ctx, sizes)
        future = client.submit(
            run_on_worker,
            job,
            key=f"motionflow-{instance.stage}-{uuid.uuid4().hex}",
            pure=False,
            retries=TASK_RETRIES,
        )
        try:
            payload: dict[str, Any] = await future
        except asyncio.CancelledError:
            self._cancel(future)
            raise
        if "error" in payload:  # the worker's exception, MotionflowError exit codes kept
            raise payload["error"]
        if self.remote is None:
            return self._receive(payload, ctx)
        return await asyncio.to_thread(self._receive, payload, ctx)  # may download

    def _receive(self, payload: dict[str, Any], ctx: StageContext) -> StageResult:
        cache = self._blobs()
        outputs: dict[str, Any] = {}
        for name, entry in payload["outputs"].items():
            if "value" in entry:
                outputs[name] = entry["value"]
                continue
            digest: str = entry["file"]
            blob = cache.blob_path(digest)
            if self.remote is not None:
                with self._lock:
                    self._on_remote.add(digest)  # the worker uploaded it
                if not blob.is_file():  # made on another machine's disk
                    blob = fetch_from_remote(
                        self._objects(), cache, digest, int(entry["size"]), f"output {name!r}"
                    )
            if not blob.is_file():
                msg = (
                    f"a worker stored output {name!r} as {digest[:19]}… in"
                    f" {self.worker_cache_root}, but this machine does not see it in"
                    f" {self.cache_root}: the cache must be a shared filesystem mounted at the"
                    " same path everywhere, or blobs must travel through a remote cache"
                    " (--remote)"
                )
                raise StageError(msg)
            target = ctx.workdir / f"{name}{entry['ext']}"
            try:
                os.link(blob, target)
            except OSError:
                shutil.copyfile(blob, target)
            outputs[name] = target
        return StageResult(outputs, dict(payload.get("meta") or {}))

    async def aclose(self) -> None:
        """Close the client, and the cluster if this backend started it; idempotent."""
        if self._closed:
            return
        self._closed = True
        client, self._client = self._client, None
        cluster, self._cluster = self._cluster, None
        if self._cancels:
            await asyncio.gather(*self._cancels, return_exceptions=True)
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()
        if cluster is not None:
            await asyncio.to_thread(cluster.close)
        cache, self._cache = self._cache, None
        if cache is not None:
            cache.close()
        store, self._store = self._store, None
        if store is not None:
            store.close()

    async def __aenter__(self) -> DaskBackend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def open_backend(
    spec: str,
    *,
    cache_root: Path,
    workers: int | None = None,
    remote: RemoteSpec | None = None,
) -> DaskBackend:
    """Make the backend an ``--executor`` value names.

    Args:
        spec: ``"dask"`` starts a local cluster of ``workers`` processes (default: the CPU
            count); ``"dask://HOST:PORT"`` connects to a running scheduler, whose workers use
            ``cache_root``'s path: the same shared filesystem, or (with ``remote``) a local
            cache of their own at that path.
        cache_root: the run's cache folder (``Cache.root``).
        workers: worker processes of a local cluster; ignored for a scheduler address.
        remote: the team's remote cache, for a scheduler address: blobs then travel between
            this machine and the workers through it (by digest, verified on arrival), so the
            workers need no shared filesystem; each uses the credentials of its own
            environment. Ignored for ``"dask"``: a local cluster shares this machine's disk.

    Raises:
        UsageError: an unknown spec, distributed not installed, or an unreachable scheduler.
    """
    text = spec.strip()
    if text == "dask":
        return DaskBackend(cache_root=cache_root, workers=workers)  # one disk: no remote needed
    if text.startswith("dask://") and len(text) > len("dask://"):
        return DaskBackend(text.removeprefix("dask://"), cache_root=cache_root, remote=remote)
    msg = f"unknown executor {spec!r}; use {_SPECS}"
    raise UsageError(msg)
