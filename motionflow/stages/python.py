"""The ``python`` stage: call ``package.module:function``; its source is part of the key."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import inspect
import json
import queue
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from motionflow.errors import StageError
from motionflow.keys import digest_text
from motionflow.stages.base import BaseStage, FileArtifact, OutputKind, StageContext, StageResult

__all__ = ["PythonParams", "PythonStage", "resolve_callable", "source_digest"]


class PythonParams(BaseModel):
    """Parameters of ``python``: ``call`` plus any keyword arguments for the function."""

    model_config = ConfigDict(extra="allow", frozen=True, arbitrary_types_allowed=True)

    call: str = Field(
        pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
        description="package.module:function, importable from the project folder or sys.path."
        " Every other key under with: is passed as a keyword argument (files as pathlib.Path)."
        " A parameter named outdir receives an empty folder for files the function writes.",
    )


def _raised(exc: BaseException) -> str:
    """``SystemExit: 3`` and the like, for a message; what the exception says, if anything."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _import_failed(module_name: str, call: str, exc: BaseException) -> str:
    msg = f"importing {module_name!r} for call {call!r} raised {_raised(exc)}"
    if isinstance(exc, SystemExit):
        msg += (
            "; a module must not exit when imported: move the code that calls sys.exit() or"
            ' exit() under `if __name__ == "__main__":`'
        )
    return msg


def resolve_callable(call: str) -> Any:
    """Import ``module:function`` and return the function.

    Raises:
        ValueError: with a message naming what could not be imported and why.
    """
    module_name, _, attr = call.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        msg = (
            f"cannot import {module_name!r} for call {call!r}: {exc}. Put the module in the "
            "project folder (beside the recipe) or install it"
        )
        raise ValueError(msg) from exc
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # SystemExit too: a module must not end us
        raise ValueError(_import_failed(module_name, call, exc)) from exc
    func = getattr(module, attr, None)
    if not callable(func):
        msg = f"{module_name!r} has no function {attr!r} (from call {call!r})"
        raise ValueError(msg)
    return func


def _file_stamp(path: str | None) -> tuple[int, int]:
    try:
        st = Path(path).stat() if path else None
    except OSError:
        st = None
    return (st.st_mtime_ns, st.st_size) if st else (0, 0)


# call -> (module file stamp, source digest, when the stamp was read): a 10,000-variant sweep
# reads the source once, and stats the module at most once a second.
_DIGESTS: dict[str, tuple[tuple[int, int], str, float]] = {}
_RESTAT_SECONDS = 1.0


def source_digest(call: str) -> str:
    """Digest of the called function's source, re-read (and its module reloaded) only when the
    module's file changes.

    Raises:
        ValueError: the function cannot be imported or its source cannot be read.
    """
    hit = _DIGESTS.get(call)
    now = time.monotonic()
    if hit is not None and now - hit[2] < _RESTAT_SECONDS:
        return hit[1]
    func = resolve_callable(call)
    module = sys.modules.get(getattr(func, "__module__", ""), None)
    stamp = _file_stamp(getattr(module, "__file__", None))
    if hit is not None and hit[0] == stamp:
        _DIGESTS[call] = (stamp, hit[1], now)
        return hit[1]
    if hit is not None and module is not None:  # edited since imported: run the new code
        try:
            importlib.reload(module)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # as in resolve_callable
            raise ValueError(_import_failed(module.__name__, call, exc)) from exc
        func = resolve_callable(call)
    try:
        digest = digest_text(inspect.getsource(func))
    except (OSError, TypeError) as exc:
        msg = f"cannot read the source of {call!r} to key it ({exc}); define it in a .py file"
        raise ValueError(msg) from exc
    _DIGESTS[call] = (stamp, digest, now)
    return digest


def _argument(value: Any) -> Any:
    if isinstance(value, FileArtifact):
        return value.path
    if isinstance(value, list):
        return [_argument(v) for v in value]
    if isinstance(value, dict):
        return {k: _argument(v) for k, v in value.items()}
    return value


class _DaemonPool:
    """Daemon threads that run blocking stage functions, kept between calls.

    Starting a thread per instance cost about 0.8 ms each (a third of a 1,000-instance
    build). Idle workers wait on a queue; a call with none idle starts one more, so the pool
    grows to the run's concurrency (the executor's semaphore bounds it) and no further.
    Unlike ``asyncio.to_thread``'s pool, its threads are daemons: Ctrl-C does not wait for a
    function that cannot be stopped; an interrupted run abandons it (its work folder is
    already gone) and exits at once.
    """

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._started = 0

    def idle(self) -> None:
        """Called by a worker when its job's result is ready, *before* the loop hears of it: the
        next submit then finds it idle instead of starting another thread."""
        with self._lock:
            self._idle += 1

    def submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            if self._idle > 0:
                self._idle -= 1
            else:
                self._started += 1
                threading.Thread(
                    target=self._work, name=f"python-stage-{self._started}", daemon=True
                ).start()
        self._queue.put(job)

    def _work(self) -> None:
        while True:
            self._queue.get()()


_POOL = _DaemonPool()


@functools.lru_cache(maxsize=256)
def _takes_outdir(func: Any) -> bool:
    """Whether ``func`` has an ``outdir`` parameter; asked twice per instance (a work folder
    or not, then the call), so ``inspect.signature`` runs once per function."""
    return "outdir" in inspect.signature(func).parameters


async def _in_daemon_thread(func: Any, kwargs: dict[str, Any]) -> Any:
    """Run a blocking function in one of the pool's daemon threads (see :class:`_DaemonPool`)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if not future.done():
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    def job() -> None:
        try:
            outcome = (True, func(**kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
            outcome = (False, exc)
        _POOL.idle()
        with contextlib.suppress(RuntimeError):  # the loop closed: the run was interrupted
            loop.call_soon_threadsafe(settle, *outcome)

    _POOL.submit(job)
    return await future


class PythonStage(BaseStage):
    """Run a user function. Sync functions run in a worker thread; async ones are awaited."""

    kind: ClassVar[str] = "python"
    version: ClassVar[str] = "1"
    Params: ClassVar[type[BaseModel]] = PythonParams
    outputs: ClassVar[dict[str, OutputKind]] = {"value": "value", "file": "file"}
    takes_allowed: ClassVar[bool] = True

    def environment(self, params: BaseModel, provider: str) -> dict[str, Any]:
        """The digest of the function's source: editing the function re-runs the stage."""
        del provider
        assert isinstance(params, PythonParams)
        return {"source": source_digest(params.call)}

    def watched_files(self, params: dict[str, Any]) -> list[Path]:
        """The module file defining the function (for the no-op fast path's stamp)."""
        call = params.get("call")
        module = sys.modules.get(str(call).partition(":")[0]) if isinstance(call, str) else None
        origin = getattr(module, "__file__", None)
        return [Path(origin)] if origin else []

    def needs_workdir(self, params: BaseModel) -> bool:
        """Only a function taking ``outdir`` gets a work folder (one ``mkdir`` and ``rmtree``
        fewer per instance); a ``Path`` it returns from elsewhere is copied into the cache."""
        assert isinstance(params, PythonParams)
        try:
            return _takes_outdir(resolve_callable(params.call))
        except Exception:  # noqa: BLE001 - run() reports it, located, as the instance's failure
            return True

    async def run(self, params: BaseModel, ctx: StageContext) -> StageResult:
        """Call the function; a returned ``Path`` becomes ``file``, anything else ``value``."""
        assert isinstance(params, PythonParams)
        func = resolve_callable(params.call)
        kwargs = {k: _argument(v) for k, v in (params.model_extra or {}).items()}
        if _takes_outdir(func):
            kwargs["outdir"] = ctx.workdir
        try:
            if inspect.iscoroutinefunction(func):
                result = await func(**kwargs)
            else:
                result = await _in_daemon_thread(func, kwargs)
        except (KeyboardInterrupt, asyncio.CancelledError):
            raise  # Ctrl-C, or the run is being cancelled: not the function's failure
        except BaseException as exc:  # SystemExit too: a function must not end us
            msg = f"{params.call} raised {_raised(exc)}"
            if isinstance(exc, SystemExit):
                msg += (
                    "; a stage function must return its result or raise an exception, not"
                    " exit: replace sys.exit()/exit() with `raise ValueError(...)`"
                )
            raise StageError(msg) from exc
        if isinstance(result, Path):
            if not result.is_file():
                msg = f"{params.call} returned {str(result)!r}, which is not a file"
                raise StageError(msg)
            return StageResult({"file": result})
        try:
            json.dumps(result, allow_nan=False)
        except (TypeError, ValueError) as exc:
            msg = (
                f"{params.call} returned a {type(result).__name__}, which is not JSON: {exc}. "
                "Return a pathlib.Path for a file, or str/number/bool/list/dict"
            )
            raise StageError(msg) from exc
        return StageResult({"value": result})
