"""The paid-job side of a run: its provider session, publisher and collector of earlier jobs.

:func:`~motionflow.engine.run.execute` never builds these itself: the caller hands it a
:data:`GenerationsFactory` (``execute(..., generations=...)``), and a library user who passes
nothing gets :func:`open_generations`, which checks the provider's configuration (API key,
publisher) before any stage runs, so a mistake costs nothing, and opens sockets, the rate
limiter and the simulator only when a generation actually runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from motionflow.errors import UsageError
from motionflow.events import Event
from motionflow.providers.empiriolabs import EmpirioLabsClient
from motionflow.providers.options import GenerationOptions, options_from_env
from motionflow.providers.session import GenerationSession
from motionflow.providers.settings import DEFAULT_BASE_URL, check_api_key, check_base_url
from motionflow.publish.factory import make_publisher, publisher_spec

if TYPE_CHECKING:
    from motionflow.cache.lease import Leases
    from motionflow.cache.store import Cache
    from motionflow.plan import Plan

__all__ = ["Generations", "GenerationsFactory", "open_generations"]


class Generations:
    """The paid jobs of one run: the session its generations use, and the one that collects.

    Args:
        options: the provider flags and settings of the run.
        open_session: makes the run's session on first use (None: the run has nothing to pay).
        open_collector: makes a session that fetches earlier runs' jobs, or returns None when
            no API key is at hand (the run then says how to collect them).
    """

    def __init__(
        self,
        options: GenerationOptions,
        open_session: Callable[[], GenerationSession] | None = None,
        open_collector: Callable[[], GenerationSession | None] | None = None,
    ) -> None:
        self.options = options
        self._open_session = open_session
        self._open_collector = open_collector
        self._sessions: list[GenerationSession] = []
        self.run_session: GenerationSession | None = None
        """The session of this run's generations, once one ran."""

    def __repr__(self) -> str:
        return f"Generations(opened={len(self._sessions)})"

    def session(self) -> GenerationSession:
        """The run's provider session, opened on the first call.

        Raises:
            UsageError: the run was planned without generations but one needs a session.
        """
        if self.run_session is None:
            if self._open_session is None:
                msg = "this run has no provider session (nothing to generate was planned)"
                raise UsageError(msg)
            self.run_session = self._open_session()
            self._sessions.append(self.run_session)
        return self.run_session

    def collector(self) -> GenerationSession | None:
        """A session that fetches paid jobs of earlier runs, or None without an API key.

        Raises:
            UsageError: the API key is malformed.
        """
        if self._open_collector is None:
            return None
        session = self._open_collector()
        if session is not None:
            self._sessions.append(session)
        return session

    @property
    def charged_usd(self) -> float:
        """What this run's accepted submits cost (0 before any, and with the simulator)."""
        return self.run_session.charged_usd if self.run_session is not None else 0.0

    @property
    def in_doubt(self) -> int:
        """Submits of this run whose fate is unknown (maybe charged)."""
        return len(self.run_session.in_doubt) if self.run_session is not None else 0

    async def aclose(self) -> None:
        """Settle costs and close every session opened (in the order they were opened)."""
        sessions, self._sessions = self._sessions, []
        for session in sessions:
            await session.aclose()


GenerationsFactory = Callable[["Plan", "Cache", Callable[[Event], None]], Generations]
"""Builds a run's :class:`Generations` from its plan, cache and event sink (``execute``'s
``generations=``); :func:`open_generations` with options bound is the default."""


def open_generations(
    plan: Plan,
    cache: Cache,
    emit: Callable[[Event], None],
    *,
    options: GenerationOptions | None = None,
    publish: Any = None,
    leases: Leases | None = None,
) -> Generations:
    """Check the provider's configuration now, and return how to open its sessions later.

    Args:
        plan: the run's plan (its provider, publisher and paid instances).
        cache: the cache (journal, locks, rate-limit state, blobs, published URLs).
        emit: where sessions send events.
        options: provider flags and settings (default: from the environment).
        publish: a publisher spec from the CLI, overriding the recipe's ``publish:``.
        leases: the team's leases (a remote is configured): paid submits claim the key on the
            remote first, so two machines never pay for one generation (the simulator takes
            none).

    Raises:
        UsageError: no API key or no publisher for a run with generations to submit.
    """
    options = options or options_from_env()
    provider = plan.recipe.model.provider
    env = options.env if options.env is not None else os.environ
    paid = any(p.instance.impl.paid for p in plan.to_run)
    spec = publisher_spec(provider, plan.recipe.model.publish, publish) if paid else None
    if paid and provider != "simulate":
        key = env.get("EMPIRIOLABS_API_KEY", "").strip()
        if not key:
            msg = (
                f"{plan.recipe.display}: provider empiriolabs needs an API key: set "
                "EMPIRIOLABS_API_KEY (sk-empiriolabs-...), or use provider: simulate to try the "
                "recipe for free. Nothing was submitted"
            )
            raise UsageError(msg)
        check_api_key(key)  # before any journal record: a bad key costs nothing
        check_base_url(env.get("EMPIRIOLABS_BASE_URL", "").strip() or DEFAULT_BASE_URL)

    def origin_of(digest: str) -> str | None:
        found = cache.get("origin:" + digest)
        return found if isinstance(found, str) else None

    holder: list[GenerationSession] = []

    async def client() -> EmpirioLabsClient:
        return await holder[0].client()

    publisher = (
        make_publisher(
            spec,
            project_root=plan.recipe.root,
            allow_outside_project=plan.recipe.allow_outside_project,
            origin_of=origin_of,
            client=client,
            env=env,
        )
        if spec is not None
        else None
    )

    def open_session() -> GenerationSession:
        memo = None if provider == "simulate" else cache
        session = GenerationSession(provider, cache, memo, publisher, options, emit, leases=leases)
        holder.append(session)
        return session

    def open_collector() -> GenerationSession | None:
        key = env.get("EMPIRIOLABS_API_KEY", "").strip()
        if not key:
            return None
        check_api_key(key)
        return GenerationSession("empiriolabs", cache, cache, None, options, emit, leases=leases)

    return Generations(options, open_session if publisher is not None else None, open_collector)
