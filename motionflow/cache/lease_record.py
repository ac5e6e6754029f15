"""A lease on a paid submit, as stored, and what a machine does on reading one.

The record (:class:`Lease`), its states and their order, and the pure decision (:func:`decide`)
with its outcomes; :mod:`motionflow.cache.lease` makes the conditional reads and writes on the
team's remote (and re-exports these names).

States of one lease *version* (docs/team.md, "Paid jobs across machines", draws them)::

    claimed ──> submitting ──> submitted ──> stored
       │            │              ├──> failed (the service failed the job)
       │            │              └──> lost   (its result expired before anyone fetched it)
       │            ├──> in_doubt ──> submitted (its holder learned the job id after all)
       │            ├──> failed    (the service refused the request: nothing was charged)
       │            └──> released  (the POST certainly never reached the service)
       └──> released (stopped before sending anything)

A lease never goes back in that order. A *takeover* replaces a lease with a new version
(``epoch`` + 1, ``claimed``, this machine as holder), with ``If-Match`` on the etag read, so of
two machines taking over at once exactly one wins. Takeovers happen only when nothing can be
paid twice, or when the user said to pay again:

- ``claimed`` and stale (no change for ``wait_seconds``, by the store's clock): the holder
  stopped before sending anything (a holder writes ``submitting`` before every POST);
- ``released``: nothing was sent;
- ``submitting`` and stale, or ``in_doubt``: only with ``--resubmit-in-doubt``, with the
  lease's own ``Idempotency-Key``;
- ``failed``: only with ``--retry-failed``; ``lost``: only with ``--resubmit-lost`` (a new
  attempt, so a new ``Idempotency-Key``), as the journal protocol says for one machine.

A lease with a job id (``submitted``, ``stored``) is *followed*: the other machine polls and
downloads that job exactly like a resumed one, paying nothing.

Ages are measured with the store's clock only (``ObjectInfo.modified`` against the ``Date`` of
its answers): the machines' own clocks may be minutes apart.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, dataclass, field
from typing import Literal, Protocol

from motionflow.errors import CacheError

__all__ = [
    "FORMAT",
    "LEASE_STATES",
    "NEXT",
    "RANK",
    "VERSION",
    "Blocked",
    "Decision",
    "Flags",
    "Follow",
    "Lease",
    "LeaseMoved",
    "Outcome",
    "Ticket",
    "Won",
    "blocked",
    "damaged",
    "decide",
    "lease_name",
]

FORMAT = "motionflow-lease"
VERSION = 1

LEASE_STATES = (
    "claimed",
    "submitting",
    "submitted",
    "in_doubt",
    "stored",
    "failed",
    "lost",
    "released",
)
NEXT: dict[str, tuple[str, ...]] = {
    "claimed": ("submitting", "released"),
    "submitting": ("submitted", "in_doubt", "failed", "released"),
    "submitted": ("stored", "failed", "lost"),
    "in_doubt": ("submitted",),
    "stored": (),
    "failed": (),
    "lost": (),
    "released": (),
}
"""The transitions within one lease version; anything else is a takeover (a new version)."""
RANK = {
    "claimed": 0,
    "submitting": 1,
    "submitted": 2,
    "in_doubt": 2,
    "stored": 3,
    "failed": 3,
    "lost": 3,
    "released": 3,
}
"""The protocol's order: a lease version never goes to a lower rank."""

Decision = Literal["claim", "follow", "wait", "takeover", "in_doubt", "failed", "lost"]


class Flags(Protocol):  # motionflow.providers.options.GenerationOptions
    @property
    def resubmit_in_doubt(self) -> bool: ...
    @property
    def resubmit_lost(self) -> bool: ...
    @property
    def retry_failed(self) -> bool: ...


def lease_name(key: str) -> str:
    """The object of ``key``'s lease, relative to the store's prefix."""
    return f"v1/leases/{key}.json"


@dataclass
class Lease:
    """One version of a key's lease, as stored (``etag``/``age`` are what the store said)."""

    key: str
    holder: str
    state: str
    idempotency_key: str
    estimated_usd: float
    label: str
    recipe: str
    created_at: str
    updated_at: str
    job_id: str | None = None
    attempt: int = 0
    epoch: int = 0
    error: str | None = None
    history: list[list[str]] = field(default_factory=list)
    etag: str = field(default="", compare=False)
    age: float = field(default=0.0, compare=False)
    """Seconds since the last change, by the store's clock."""

    def to_bytes(self) -> bytes:
        data = asdict(self)
        del data["etag"], data["age"]
        return json.dumps({"format": FORMAT, "version": VERSION, **data}, sort_keys=True).encode()

    @classmethod
    def parse(cls, raw: bytes, *, where: str) -> Lease:
        """Read a stored lease.

        Raises:
            CacheError: not a lease of this format (never guessed at: it may stand for money).
        """
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise CacheError(damaged(where, f"it is not JSON ({exc})")) from exc
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise CacheError(damaged(where, "it is not a motionflow lease"))
        if data.get("version") != VERSION:
            why = f"it has version {data.get('version')!r:.20}; this motionflow reads {VERSION}"
            raise CacheError(damaged(where, why + " (upgrade motionflow)"))
        body = {k: v for k, v in data.items() if k not in {"format", "version"}}
        try:
            lease = cls(**body)
        except TypeError as exc:
            raise CacheError(damaged(where, f"its fields are wrong ({exc})")) from exc
        texts = (lease.key, lease.holder, lease.state, lease.idempotency_key, lease.created_at)
        ok = (
            all(isinstance(t, str) for t in texts)
            and lease.state in LEASE_STATES
            and (lease.job_id is None or isinstance(lease.job_id, str))
            and isinstance(lease.attempt, int)
            and isinstance(lease.epoch, int)
            and isinstance(lease.estimated_usd, int | float)
            and not isinstance(lease.estimated_usd, bool)
            and all(isinstance(t, str) for t in (lease.label, lease.recipe, lease.updated_at))
            and (lease.error is None or isinstance(lease.error, str))
            and isinstance(lease.history, list)
            and all(
                isinstance(h, list) and len(h) >= 2 and all(isinstance(x, str) for x in h)
                for h in lease.history
            )
        )
        if not ok:
            raise CacheError(damaged(where, "a field has the wrong type or an unknown state"))
        return lease

    @property
    def began(self) -> str:
        """When this version was claimed (the holder's clock, for people to read)."""
        return self.created_at


def damaged(where: str, why: str) -> str:
    return (
        f"the lease {where} is damaged: {why}. It may stand for a paid job, so nothing is "
        "submitted for this generation: look at it, and remove it from the bucket only once you "
        "know its job (other machines may be fetching it)"
    )


def decide(lease: Lease | None, *, wait_seconds: float, flags: Flags) -> Decision:
    """What a machine without a local record of the key does on reading ``lease``.

    ``claim``: create the lease; ``follow``: fetch its job; ``wait``: read it again soon;
    ``takeover``: replace it (``If-Match``) and submit; ``in_doubt``/``failed``/``lost``: stop
    with a message, nothing submitted.
    """
    if lease is None:
        return "claim"
    state = lease.state
    if state in {"submitted", "stored"} and lease.job_id:
        return "follow"
    if state == "released":
        return "takeover"
    if state == "claimed":
        return "wait" if lease.age < wait_seconds else "takeover"
    if state == "submitting" and lease.age < wait_seconds:
        return "wait"
    if state in {"submitting", "in_doubt", "submitted", "stored"}:  # (the last two: no job id)
        return "takeover" if flags.resubmit_in_doubt else "in_doubt"
    if state == "failed":
        return "takeover" if flags.retry_failed else "failed"
    return "takeover" if flags.resubmit_lost else "lost"


@dataclass
class Ticket:
    """A lease this machine won: it may submit, and it writes the lease's next states."""

    lease: Lease
    took_over: Lease | None = None
    """The version this one replaced, if a takeover."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock, compare=False, repr=False)
    moved: bool = False
    """A write found the lease changed by someone else: this machine must not submit."""

    @property
    def attempt(self) -> int:
        return self.lease.attempt

    @property
    def idempotency_key(self) -> str:
        return self.lease.idempotency_key


@dataclass(frozen=True)
class Won:
    """Submit: this machine holds the lease (``ticket``)."""

    ticket: Ticket


@dataclass(frozen=True)
class Follow:
    """Do not submit: poll and download the job of ``lease`` (another machine paid for it)."""

    lease: Lease


@dataclass(frozen=True)
class Blocked:
    """Do not submit: the lease is in doubt, failed, lost or damaged; ``message`` says why."""

    why: str
    message: str
    lease: Lease | None = None


Outcome = Won | Follow | Blocked


class LeaseMoved(CacheError):  # noqa: N818 - a condition, like objects.Conflict
    """The lease changed under its holder (another machine took it over): do not submit."""


def blocked(decision: str, lease: Lease, where: str) -> Blocked:
    label = lease.label or lease.key[:12]
    who = f"{lease.holder} (lease {where}, began {lease.began})"
    if decision == "in_doubt":
        if lease.state == "in_doubt":
            why = f"its submit by {who} is in doubt: {lease.error or 'no answer'}"
        else:
            why = (
                f"{who} claimed it and started submitting, then stopped answering for "
                f"{lease.age:.0f} s with no job id: it may have died mid-POST"
            )
        message = (
            f"{label}: a job may already have been charged (${lease.estimated_usd:.2f}): {why}. "
            "It is not submitted again by itself. If the holder's machine still has it, "
            "`motionflow jobs` there shows it; if you find the job id or the usage charge "
            f"(`motionflow jobs` lists the account's charges), attach it with `motionflow jobs "
            f"adopt {lease.key[:12]} --job ID` (or `--event ID`); or run with "
            "--resubmit-in-doubt to pay again (sent with the same Idempotency-Key "
            f"{lease.idempotency_key})"
        )
    elif decision == "failed":
        message = (
            f"{label}: EmpirioLabs job {lease.job_id or '(refused at submit)'} submitted by "
            f"{who} failed: {lease.error or 'no reason given'}. It is not submitted again by "
            "itself; run with --retry-failed to submit it again (it is charged again, about "
            f"${lease.estimated_usd:.2f})"
        )
    else:
        message = (
            f"{label}: the result of job {lease.job_id} submitted by {who} is lost "
            f"({lease.error or 'it expired before anyone fetched it'}); to pay for it again, "
            "run with --resubmit-lost"
        )
    return Blocked(decision, message, lease)
