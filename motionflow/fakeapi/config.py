"""How the fake EmpirioLabs server behaves: :class:`FakeConfig`, and what ``arm`` may change."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from motionflow.fakeapi.faults import Faults
from motionflow.fakeapi.jobs import ResultShape, StatusWords

__all__ = ["FIXED_SETTINGS", "FakeConfig"]


@dataclass
class FakeConfig:
    """How the fake server behaves. Every duration is in service seconds times ``time_scale``.

    The settings from ``usage_job_ids`` to ``usage_mode_words`` make the fake tell the
    untruths of a real, shared, imperfect account; each is off by default. Every setting but
    :data:`FIXED_SETTINGS` can also be changed while the server runs, with
    ``FakeEmpirioLabs.arm(name=value)``.

    Attributes:
        api_key: the accepted key; None accepts any key (or none).
        time_scale: factor on every delay (queue, processing, retention, rate window, faults,
            billing lag, clock skew, late submits).
        queue_seconds: time a job spends ``queued``.
        processing_seconds: time a job spends ``processing`` (longer if rendering is slower).
        retention_seconds: a job answers 404 this long after it finishes.
        rate_limit_per_minute: requests allowed per sliding minute, across every route
            (None = unlimited); over it the answer is 429 with ``Retry-After``.
        fetch_references: GET the reference URLs like the real service; a failed fetch
            fails the job. Strangers' jobs never fetch.
        render: write a real video with ffmpeg; False writes a tiny placeholder file.
        result_shape: where the output URL goes in a completed job's ``result``.
        status_words: the status synonyms to report.
        faults: faults to inject (the server keeps its own copy; see ``arm``).
        prices: USD per billable second by mode, used for usage events.
        balance_usd: starting balance shown by the usage endpoint.
        bill_failed_jobs: whether a failed job still costs money in usage events.
        honour_idempotency_key: return the earlier job for a repeated ``Idempotency-Key``
            header instead of accepting (and billing) a new one; counted in
            ``repeat_submits``. Off: the contract documents none. Bodies without the header
            are never deduplicated.
        reject_unknown_fields: answer 422 for submit fields the contract does not list.
        usage_job_ids: put ``job_id`` in usage events. Off by default, like the real usage
            API (no job id, no request parameters); for old tests only.
        usage_page_size: the most events a usage page holds, whatever ``limit`` asked for
            (None = honour ``limit``); ``has_more``/``next_cursor`` tell the rest.
        billing_lag_seconds: a job's usage event (and its effect on the balance) appears
            this long after the job was created, on the server's clock (``advance`` moves it).
            Fixed per job when it is created.
        clock_skew_seconds: the service's clock minus ours: positive = the service is ahead.
            Shifts every timestamp the server reports (job ``created_at``/``completed_at``,
            the submit answer's ``created_at``, usage events' timestamps) and the clock the
            usage endpoint's ``from``/``to`` are read on.
        strangers_per_submit: each submit of ours that is accepted (billed) also creates this
            many jobs by "someone else" on the account, at the same moment, with the same mode
            and duration (see ``add_stranger_job``).
        usage_mode_words: how usage events spell the mode, e.g. ``{"std": "standard",
            "pro": "professional"}``; None reports ``std``/``pro`` as sent.
        store_dir: where outputs and uploads are kept; a temporary folder when None.
        port: the port to bind on 127.0.0.1; 0 picks a free one.
    """

    api_key: str | None = "sk-empiriolabs-test"
    time_scale: float = 1.0
    queue_seconds: float = 1.0
    processing_seconds: float = 2.0
    retention_seconds: float = 3600.0
    rate_limit_per_minute: int | None = None
    fetch_references: bool = True
    render: bool = True
    result_shape: ResultShape = "data"
    status_words: StatusWords = field(default_factory=StatusWords)
    faults: Faults = field(default_factory=Faults)
    prices: dict[str, float] = field(default_factory=lambda: {"std": 0.14, "pro": 0.18})
    balance_usd: float = 100.0
    bill_failed_jobs: bool = True
    honour_idempotency_key: bool = False
    reject_unknown_fields: bool = True
    usage_job_ids: bool = False
    usage_page_size: int | None = None
    billing_lag_seconds: float = 0.0
    clock_skew_seconds: float = 0.0
    strangers_per_submit: int = 0
    usage_mode_words: dict[str, str] | None = None
    store_dir: Path | None = None
    port: int = 0

    def __post_init__(self) -> None:
        if self.usage_page_size is not None and self.usage_page_size < 1:
            msg = f"usage_page_size must be at least 1 (or None), not {self.usage_page_size!r}."
            raise ValueError(msg)
        if self.strangers_per_submit < 0:
            msg = f"strangers_per_submit cannot be negative ({self.strangers_per_submit!r})."
            raise ValueError(msg)


FIXED_SETTINGS: frozenset[str] = frozenset({"faults", "port", "store_dir", "time_scale"})
"""FakeConfig fields ``arm`` refuses: they are read once at start, or rescale running jobs."""
