"""Fetching, during a run, the paid jobs of earlier runs that its plan does not cover."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from motionflow.cache.journal import Journal
from motionflow.cache.locks import key_lock
from motionflow.cache.store import Cache
from motionflow.engine.generation import Generations
from motionflow.engine.result import RunResult
from motionflow.events import Event
from motionflow.providers.resume import IN_FLIGHT

__all__ = ["Harvest"]


class Harvest:
    """Collects the paid jobs in flight that this run's plan does not cover.

    Jobs of other recipes, other vars, or a run stopped by Ctrl-C are fetched while this run
    works, whenever an API key is at hand; otherwise the run says how many are waiting and how
    to collect them (the service keeps a finished job for one hour only). The session that
    fetches them comes from the run's :class:`~motionflow.engine.generation.Generations`,
    which also closes it.
    """

    def __init__(
        self,
        cache: Cache,
        generations: Generations,
        emit: Callable[[Event], None],
        skip: set[str],
    ) -> None:
        self.cache = cache
        self.generations = generations
        self.emit = emit
        self.skip = skip
        self.task: asyncio.Task[tuple[int, list[str]]] | None = None
        self.waiting: list[str] = []

    def __repr__(self) -> str:
        return f"Harvest(cache={str(self.cache.root)!r})"

    async def start(self) -> None:
        """Tidy dead simulated jobs, note jobs in doubt, and start fetching paid ones."""
        journal = Journal(self.cache.root)
        keys = journal.open_keys() - self.skip  # cheap: no record is read when none is open
        found = [r for r in (journal.get(k) for k in sorted(keys)) if r is not None]
        for record in found:
            if record.provider == "simulate" and record.state in IN_FLIGHT:
                # its simulator died with the run that made it: nothing to fetch, nothing paid
                async with key_lock(self.cache.root, record.key):  # unless it runs right now
                    current = journal.get(record.key)
                    if current is not None and current.state in IN_FLIGHT:
                        why = "simulated job of an earlier run; its simulator is gone"
                        journal.archive(current, why)
        doubts = [r for r in found if r.provider != "simulate" and r.state not in IN_FLIGHT]
        if doubts:
            self.waiting.append(
                f"{len(doubts)} submit(s) of earlier runs are in doubt (maybe charged): "
                "`motionflow jobs` shows the account's charges around each; adopt one or pay "
                "again with --resubmit-in-doubt"
            )
        records = [r for r in found if r.state in IN_FLIGHT and r.provider == "empiriolabs"]
        if not records:
            return
        session = self.generations.collector()
        if session is None:
            self.waiting.append(
                f"{len(records)} paid job(s) of earlier runs are still to be fetched "
                f"({', '.join(sorted({r.label for r in records})[:5])}); set "
                "EMPIRIOLABS_API_KEY and run `motionflow jobs collect` within the hour the "
                "service keeps them"
            )
            return
        self.task = asyncio.create_task(session.collect_pending(self.skip))

    async def finish(self, result: RunResult) -> None:
        """Wait for the fetching and add what it did to ``result``."""
        if self.task is not None:
            done, problems = await self.task
            result.jobs_collected += done
            result.jobs_pending.extend(problems)
        result.jobs_pending.extend(self.waiting)

    def cancel(self) -> None:
        """Stop fetching (the run is ending early); the journal keeps every job for later."""
        if self.task is not None and not self.task.done():
            self.task.cancel()
