"""The journal of paid jobs: durable, atomic, and strict about its transitions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from motionflow.cache.journal import Journal
from motionflow.errors import CacheError

REQUEST = {"model": "kling-v3-motion-control", "prompt": "A dancer.", "mode": "std"}


def begin(journal: Journal, key: str = "k" * 64) -> object:
    return journal.begin(
        key,
        label="take[a]",
        recipe="demo",
        provider="empiriolabs",
        request=REQUEST,
        idempotency_key="idem-1",
        estimated_usd=0.56,
    )


def test_a_job_walks_through_its_states(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    record = begin(journal)
    journal.advance(record, "submitted", job_id="job-1")  # type: ignore[arg-type]
    journal.advance(record, "completed", output_urls=["https://cdn/x.mp4"])  # type: ignore[arg-type]
    journal.advance(record, "stored", blob="blake3:abc")  # type: ignore[arg-type]
    again = Journal(tmp_path).get("k" * 64)
    assert again is not None and again.state == "stored" and again.job_id == "job-1"
    assert [s for s, _ in again.history] == ["submitting", "submitted", "completed", "stored"]
    assert [r.key for r in journal.all()] == ["k" * 64]


def test_transitions_that_could_pay_twice_are_refused(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    record = begin(journal)
    with pytest.raises(CacheError, match="cannot go from submitting to stored"):
        journal.advance(record, "stored")  # type: ignore[arg-type]
    with pytest.raises(CacheError, match="already started"):
        begin(journal)  # a second submit for the same key
    journal.advance(record, "in_doubt", error="read timeout after sending")  # type: ignore[arg-type]
    journal.advance(record, "submitted", job_id="job-9")  # type: ignore[arg-type]


def test_a_record_survives_kill_9_between_writes(tmp_path: Path) -> None:
    """A process killed right after writing 'submitted' leaves exactly that record."""
    script = f"""
import os, signal
from pathlib import Path
from motionflow.cache.journal import Journal
j = Journal(Path({str(tmp_path)!r}))
r = j.begin("a" * 64, label="t", recipe="r", provider="p", request={{}}, idempotency_key="i", estimated_usd=1.0)
j.advance(r, "submitted", job_id="job-42")
os.kill(os.getpid(), signal.SIGKILL)
"""
    proc = subprocess.run([sys.executable, "-c", script], check=False)
    assert proc.returncode == -9
    record = Journal(tmp_path).get("a" * 64)
    assert record is not None and record.state == "submitted" and record.job_id == "job-42"
    assert not [p for p in (tmp_path / "journal").iterdir() if p.name.endswith(".part")]


def test_an_unreadable_record_is_an_error_not_a_miss(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    begin(journal)
    path = tmp_path / "journal" / ("k" * 64 + ".json")
    path.write_text("{not json")
    with pytest.raises(CacheError, match="may stand for a paid job"):
        journal.get("k" * 64)
