"""Where a bound stage instance runs: the backend protocol and the in-process default."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from motionflow.graph import Instance
from motionflow.stages.base import StageContext, StageResult

__all__ = ["Backend", "LocalBackend"]


@runtime_checkable
class Backend(Protocol):
    """Runs one bound stage instance and returns its outputs; the executor does the rest.

    The executor (:func:`motionflow.engine.run.execute`) keeps everything that decides what
    runs and what it costs in the coordinating process: keys, cache hits, the key locks, the
    budget, the cache writes, manifests and events. A backend only turns ``(instance, params,
    ctx)`` into a :class:`~motionflow.stages.base.StageResult`. So a backend is small, and
    swapping it (a Dask cluster instead of this machine's event loop) changes neither keys nor
    money.

    Contract, for someone writing a distributed backend (e.g. one on ``distributed.Client``):

    - **Free work only.** Paid instances (``instance.impl.paid``) never reach a backend other
      than :class:`LocalBackend`: generation stays in the coordinator, with one account, one
      rate limiter and one journal. ``ctx.session`` is therefore always None for you.
    - **Inputs.** ``params`` is the stage's validated pydantic model; its file parameters are
      :class:`~motionflow.artifacts.FileArtifact` paths on the coordinator's disk (cache blobs,
      read-only). Ship the bytes to the worker, or run workers on a shared filesystem.
    - **Outputs.** Return a ``StageResult`` whose file outputs are paths inside
      ``ctx.workdir`` (an empty directory on the coordinator's disk, deleted after the
      instance): copy worker-side files back there before returning. The executor moves them
      into the content-addressed store; a file outside ``ctx.workdir`` is copied. Values must
      be JSON. ``on_stored`` runs in the coordinator once the result is cached.
    - **Events.** ``ctx.emit`` is a coordinator callable, not picklable: call it from the
      coordinator (relay worker progress if you want it shown), or not at all.
    - **Failure.** Raise: a :class:`~motionflow.errors.MotionflowError` with ``exit_code`` 2
      marks the user's input as bad; any other exception fails the instance (and blocks its
      dependents, not its siblings). Nothing of a failed instance is cached.
    - **Cancel.** The executor cancels the task awaiting :meth:`run_instance` (Ctrl-C, a bug
      elsewhere). Stop or abandon the remote work (``future.cancel()``) and let
      ``asyncio.CancelledError`` propagate; a late result is simply never stored.
    - **Concurrency.** The executor awaits up to ``jobs`` instances at once (``execute(jobs=...)``,
      default the local CPU count); raise it to match a cluster's size.
    - **Close.** :meth:`aclose` releases what the backend opened. Whoever made the backend
      closes it: ``execute`` closes the default it makes, never one it was given (one client
      may serve several runs).
    """

    async def run_instance(self, instance: Instance, params: Any, ctx: StageContext) -> StageResult:
        """Run ``instance``'s stage kind on ``params`` and return its outputs."""
        ...

    async def aclose(self) -> None:
        """Release the backend's resources (workers, clients); idempotent."""
        ...


class LocalBackend:
    """Runs stages on this process's event loop (their subprocesses and threads do heavy work)."""

    def __repr__(self) -> str:
        return "LocalBackend()"

    async def run_instance(self, instance: Instance, params: Any, ctx: StageContext) -> StageResult:
        """Call the stage kind's ``run``."""
        result: StageResult = await instance.impl.run(params, ctx)
        return result

    async def aclose(self) -> None:
        """Nothing to release."""
