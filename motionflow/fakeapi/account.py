"""The account behind the fake server: every billed job, ours and strangers', and the truth."""

from __future__ import annotations

import hashlib
import json
import math
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from motionflow.fakeapi.config import FakeConfig
from motionflow.fakeapi.faults import FaultPlan
from motionflow.fakeapi.jobs import MODEL_ID, Job, SubmitRequest, iso
from motionflow.fakeapi.store import FileStore
from motionflow.fakeapi.usage import usage_event
from motionflow.fakeapi.worker import produce_output

__all__ = ["Account", "Premises", "SubmitOutcome"]

SubmitOutcome = Literal["accepted", "repeat", "no_credits", "late", "created_then_5xx"]
"""What became of a valid submit: a new job, an earlier one (honoured key), 402, or a fault."""

Owner = Literal["us", "stranger"]


@dataclass(frozen=True)
class Premises:
    """Where the account's jobs do their work, known once the server has started.

    Attributes:
        store: where outputs go (and uploads are).
        work_root: scratch space for the workers.
        base_url: the server's base URL, for output URLs.
        secret: signs output URLs and marks the server's fetches of its own files.
        internal_header: the header name that carries ``secret`` on those fetches.
    """

    store: FileStore
    work_root: Path
    base_url: str
    secret: str
    internal_header: str


def _stranger_request(mode: str, duration: float) -> SubmitRequest:
    return SubmitRequest(
        model=MODEL_ID,
        prompt="(another user's job)",
        reference_image="https://elsewhere.example/them.png",
        reference_video="https://elsewhere.example/them.mp4",
        character_orientation="video",
        mode=mode,
        duration=duration,
        keep_original_sound=True,
    )


def _body_digest(body: Any) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class Account:
    """The jobs billed to one EmpirioLabs account, their workers, and what they cost.

    Thread-safe: the HTTP threads, the timers of late jobs and the workers share one lock.

    Args:
        config: the server's settings (read live: ``arm`` changes them in place).
        plan: the live faults (``fail_jobs``, ``late_submits``, ``created_then_5xx``,
            ``insufficient_credits_after`` are decided here).
        clock: the server's clock, in scaled seconds (moved by ``advance``).
    """

    def __init__(self, config: FakeConfig, plan: FaultPlan, clock: Callable[[], float]) -> None:
        self._config = config
        self._plan = plan
        self._clock = clock
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._by_key: dict[str, str] = {}
        self._outputs: set[str] = set()
        self._submissions: list[dict[str, Any]] = []
        self._submits_by_key: Counter[str] = Counter()
        self._repeats = 0
        self._workers: list[threading.Thread] = []
        self._timers: list[threading.Timer] = []
        self._premises: Premises | None = None
        self._closed = False

    # -- lifecycle ------------------------------------------------------------------------
    def open(self, premises: Premises) -> None:
        """Start taking jobs, working in ``premises``."""
        with self._lock:
            self._premises = premises
            self._closed = False

    def close(self) -> None:
        """Cancel late jobs not yet created, then wait for every worker."""
        with self._lock:
            self._closed = True
            timers = list(self._timers)
        for timer in timers:
            timer.cancel()
            timer.join(timeout=10)
        self.wait_for_workers()

    def wait_for_workers(self, timeout: float = 120) -> None:
        """Block until every job's worker (fetch, render) has finished."""
        with self._lock:
            workers = list(self._workers)
        for worker in workers:
            worker.join(timeout=timeout)

    # -- what the server asks -------------------------------------------------------------
    def submit(
        self, request: SubmitRequest, body: dict[str, Any], header_key: str | None
    ) -> tuple[SubmitOutcome, Job | None]:
        """Take a valid submit: the job to answer with (None for 402 and late) and why."""
        with self._lock:
            known = self._known(header_key)
            if known is not None:
                self._repeats += 1
                return "repeat", known
            if self._out_of_credits():
                return "no_credits", None
            if self._plan.take("late_submits"):
                late = self._plan.current.late_seconds
                self._schedule(late, lambda: self._accept_late(request, body, header_key))
                return "late", None
            job = self._accept(request, body, header_key, header_key or _body_digest(body))
            if self._plan.take("created_then_5xx"):
                return "created_then_5xx", job
            return "accepted", job

    def add_stranger(self, mode: str, duration: float, delay: float) -> str:
        """Bill a job "someone else" submitted, now or ``delay`` service seconds from now."""
        job_id = f"job_{secrets.token_hex(12)}"
        request = _stranger_request(mode, float(duration))
        with self._lock:
            if self._premises is None or self._closed:
                msg = "start the fake server before adding a stranger's job"
                raise RuntimeError(msg)
            if delay > 0:
                self._schedule(delay, lambda: self._new_job(request, "stranger", job_id=job_id))
            else:
                self._new_job(request, "stranger", job_id=job_id)
        return job_id

    def read(self, job_id: str, now: float) -> tuple[str, dict[str, Any], float | None] | None:
        """(phase, the job object a poll shows, its finishing clock) or None if unknown."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return None
            phase, view = self._view(job, now)
            return phase, view, job.state(now)[2]

    def is_output(self, name: str) -> bool:
        """Whether the stored file ``name`` is a job's output (not an upload)."""
        with self._lock:
            return name in self._outputs

    def usage_rows(self, now: float) -> tuple[list[tuple[dict[str, Any], str]], float]:
        """Every usage event billing has caught up with, newest first, with its job's phase;
        and the total they charged."""
        cfg = self._config
        rows: list[tuple[dict[str, Any], str]] = []
        spent = 0.0
        with self._lock:
            for job in sorted(self._jobs.values(), key=lambda j: (j.created, j.seq), reverse=True):
                if now < job.billed_from:
                    continue  # billing lags: not charged yet, as far as this endpoint knows
                phase, view = self._view(job, now)
                amount = self._amount(job, phase)
                spent += amount
                event = usage_event(
                    job,
                    view,
                    amount=amount,
                    output_url=self._output_url(job) if phase == "completed" else None,
                    mode_words=cfg.usage_mode_words,
                    with_job_id=cfg.usage_job_ids,
                )
                rows.append((event, phase))
        return rows, spent

    def skew(self) -> float:
        """The service's clock minus ours, in (scaled) seconds."""
        return self._config.clock_skew_seconds * self._config.time_scale

    # -- what tests ask -------------------------------------------------------------------
    def submissions(self) -> list[dict[str, Any]]:
        """Every accepted submit body of ours, in order."""
        with self._lock:
            return list(self._submissions)

    def submits_by_key(self) -> Counter[str]:
        """Accepted submits of ours by ``Idempotency-Key``, else a digest of the body."""
        with self._lock:
            return Counter(self._submits_by_key)

    def repeat_submits(self) -> int:
        """Submits answered with an earlier job by their honoured ``Idempotency-Key``."""
        with self._lock:
            return self._repeats

    def job_ids(self, owner: Owner) -> list[str]:
        """Ids of ``owner``'s jobs, oldest first."""
        with self._lock:
            return [j.job_id for j in self._jobs.values() if j.owner == owner]

    def charges(self, now: float) -> list[dict[str, Any]]:
        """One entry per billed job, oldest first (see ``FakeEmpirioLabs.charges``)."""
        skew = self.skew()
        entries = []
        with self._lock:
            for job in self._jobs.values():
                phase = job.state(now)[0]
                if not self._billed(phase):
                    continue
                name, base = job.output_name, self._base_url()
                entries.append(
                    {
                        "job_id": job.job_id,
                        "idempotency_key": job.idempotency_key,
                        "owner": job.owner,
                        "mode": job.request.mode,
                        "amount_usd": self._amount(job, phase),
                        "created": job.created_wall + skew,
                        "created_at": iso(job.created_wall + skew),
                        "output_url": None if name is None else f"{base}/files/{name}",
                    }
                )
        return entries

    def billed_by_key(self, now: float) -> Counter[str]:
        """Billed jobs of ours per key (``Idempotency-Key``, else a digest of the body)."""
        with self._lock:
            return Counter(
                job.count_key
                for job in self._jobs.values()
                if job.owner == "us" and self._billed(job.state(now)[0])
            )

    # -- internals (the caller holds the lock) --------------------------------------------
    def _scaled(self, seconds: float) -> float:
        return seconds * self._config.time_scale

    def _known(self, header_key: str | None) -> Job | None:
        if header_key is None or not self._config.honour_idempotency_key:
            return None
        return self._jobs.get(self._by_key.get(header_key, ""))

    def _out_of_credits(self) -> bool:
        after = self._plan.current.insufficient_credits_after
        return after is not None and len(self._submissions) >= after

    def _accept(
        self, request: SubmitRequest, body: dict[str, Any], header_key: str | None, count_key: str
    ) -> Job:
        job = self._new_job(
            request,
            "us",
            will_fail=self._plan.take_fail_job(),
            header_key=header_key,
            count_key=count_key,
        )
        if header_key is not None:
            self._by_key.setdefault(header_key, job.job_id)
        self._submissions.append(body)
        self._submits_by_key[count_key] += 1
        for _ in range(self._config.strangers_per_submit):
            self._new_job(_stranger_request(request.mode, request.duration), "stranger")
        return job

    def _accept_late(
        self, request: SubmitRequest, body: dict[str, Any], header_key: str | None
    ) -> None:
        # An honoured key that got a job meanwhile wins; so does an empty balance.
        if self._known(header_key) is None and not self._out_of_credits():
            self._accept(request, body, header_key, header_key or _body_digest(body))

    def _new_job(
        self,
        request: SubmitRequest,
        owner: Owner,
        *,
        will_fail: bool = False,
        header_key: str | None = None,
        count_key: str = "",
        job_id: str | None = None,
    ) -> Job:
        now = self._clock()
        queued_until = now + self._scaled(self._config.queue_seconds)
        job = Job(
            job_id=job_id or f"job_{secrets.token_hex(12)}",
            request=request,
            created=now,
            created_wall=time.time(),
            queued_until=queued_until,
            ready_at=queued_until + self._scaled(self._config.processing_seconds),
            will_fail=will_fail,
            billable=float(math.ceil(request.duration)),
            seq=len(self._jobs),
            owner=owner,
            idempotency_key=header_key,
            count_key=count_key,
            usage_id=f"use_{secrets.token_hex(12)}",
            billed_from=now + self._scaled(self._config.billing_lag_seconds),
        )
        self._jobs[job.job_id] = job
        if self._premises is not None and not self._closed:  # else it never completes
            worker = threading.Thread(target=self._work, args=(job, self._premises), daemon=True)
            self._workers.append(worker)
            worker.start()
        return job

    def _schedule(self, seconds: float, create: Callable[[], object]) -> None:
        # ``create`` runs later with the lock held, unless the account was closed meanwhile.
        def fire() -> None:
            with self._lock:
                if not self._closed:
                    create()

        timer = threading.Timer(self._scaled(seconds), fire)
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def _work(self, job: Job, premises: Premises) -> None:
        def set_billable(seconds: float) -> None:
            with self._lock:
                job.billable = seconds

        outcome = produce_output(
            job_id=job.job_id,
            request=job.request,
            work_root=premises.work_root,
            store=premises.store,
            fetch=self._config.fetch_references and job.owner == "us",
            render=self._config.render,
            will_fail=job.will_fail,
            internal_headers={premises.internal_header: premises.secret},
            on_billable=set_billable,
        )
        with self._lock:
            job.billable = outcome.billable
            job.output_name = outcome.output_name
            job.worker_error = outcome.error
            job.worker_done = self._clock()
            if outcome.output_name is not None:
                self._outputs.add(outcome.output_name)

    def _billed(self, phase: str) -> bool:
        return phase != "failed" or self._config.bill_failed_jobs

    def _amount(self, job: Job, phase: str) -> float:
        if not self._billed(phase):
            return 0.0
        return round(job.billable * self._config.prices[job.request.mode], 2)

    def _base_url(self) -> str:
        return "" if self._premises is None else self._premises.base_url

    def _output_url(self, job: Job) -> str | None:
        if job.output_name is None or self._premises is None:
            return None
        expires = int(job.created_wall) + 7 * 86400
        signed = f"{self._premises.secret}:{job.output_name}".encode()
        sig = hashlib.sha256(signed).hexdigest()[:32]
        return (
            f"{self._premises.base_url}/files/{job.output_name}?Expires={expires}&Signature={sig}"
        )

    def _view(self, job: Job, now: float) -> tuple[str, dict[str, Any]]:
        cfg = self._config
        url = self._output_url(job)
        return job.view(now, cfg.status_words, cfg.result_shape, url, self.skew())
