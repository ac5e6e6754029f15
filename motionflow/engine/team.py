"""A team's shared remote cache, as one run or command opens it.

The remote (``--remote``, ``MOTIONFLOW_REMOTE`` or ``[cache] remote`` in ``motionflow.toml``:
:func:`~motionflow.cache.remote_config.remote_choice`) is one S3-compatible bucket and prefix
holding two things, each with its own module:

- results and their blobs (:class:`~motionflow.cache.remote.RemoteCache`): attached to the
  local :class:`~motionflow.cache.store.Cache`, so a miss asks the remote and a stored result
  goes up, for planning and running alike;
- leases on paid submits (:class:`~motionflow.cache.lease.Leases`): handed to the run's
  :class:`~motionflow.engine.generation.Generations`, so two machines never submit (and pay
  for) the same generation.

docs/team.md explains what is shared and what is trusted.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from motionflow.cache.objects import ObjectStore
from motionflow.cache.remote_config import RemoteChoice
from motionflow.cache.store import Cache

if TYPE_CHECKING:
    from motionflow.cache.lease import Leases
    from motionflow.cache.remote import RemoteCache

__all__ = ["Team", "holder_id", "open_team"]


def holder_id() -> str:
    """Who holds a lease: this machine, this process, and a random part (pids are reused)."""
    return f"{socket.gethostname()[:64]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class Team:
    """The remote of one command: its store, the remote side of the cache, and its leases."""

    choice: RemoteChoice
    store: ObjectStore
    remote: RemoteCache
    holder: str = field(default_factory=holder_id)
    _leases: Any = None

    def leases(self) -> Leases:
        """The leases paid submits take before they are sent (made on first use)."""
        if self._leases is None:
            from motionflow.cache.lease import Leases

            self._leases = Leases(self.store, holder=self.holder)
        leases: Leases = self._leases
        return leases

    def close(self) -> list[str]:
        """Wait for the pushes still under way; returns what could not be pushed, if anything."""
        try:
            return self.remote.wait()
        finally:
            self.store.close()

    def summary(self, problems: list[str]) -> dict[str, Any]:
        """What went up and came down, for ``run --json`` (``RunResult.remote``)."""
        remote = self.remote
        return {
            "url": self.store.url,
            "origin": self.choice.origin,
            "share": self.choice.share,
            "pulled": remote.pulled,
            "pulled_bytes": remote.pulled_bytes,
            "pushed": remote.pushed,
            "pushed_bytes": remote.pushed_bytes,
            "problems": problems,
        }


def open_team(choice: RemoteChoice | None, cache: Cache) -> Team | None:
    """Attach the chosen remote to ``cache`` (None: no remote, nothing changes).

    Nothing is contacted yet: the first miss, push or lease does.

    Raises:
        UsageError: boto3 is not installed.
    """
    if choice is None:
        return None
    from motionflow.cache.remote import RemoteCache
    from motionflow.engine.references import stage_kind

    store = ObjectStore(choice.spec)
    remote = RemoteCache(store, cache, stage_kind, share=choice.share)
    cache.remote = remote
    return Team(choice, store, remote)
