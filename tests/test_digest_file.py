"""digest_file: the same ``blake3:<hex>`` on every path (one thread, parallel, pipes)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import blake3
import pytest

from motionflow import keys
from motionflow.keys import digest_file

# Small stand-ins for the real sizes (32 MiB threshold, 8 MiB and 1 MiB chunks), so every
# boundary is crossed with files of a few KiB.
THRESHOLD = 4096
PARALLEL_CHUNK = 1000
CHUNK = 512


def expected(data: bytes) -> str:
    return "blake3:" + blake3.blake3(data).hexdigest()


@pytest.fixture
def small_sizes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keys, "_PARALLEL_MIN", THRESHOLD)
    monkeypatch.setattr(keys, "_PARALLEL_CHUNK", PARALLEL_CHUNK)
    monkeypatch.setattr(keys, "_CHUNK", CHUNK)


@pytest.mark.usefixtures("small_sizes")
@pytest.mark.parametrize(
    "size",
    [
        0,
        1,
        CHUNK - 1,
        CHUNK,
        CHUNK + 1,
        3 * CHUNK + 7,
        THRESHOLD - 1,
        THRESHOLD,
        THRESHOLD + 1,
        THRESHOLD + PARALLEL_CHUNK,
        7 * PARALLEL_CHUNK + 13,
    ],
)
def test_digest_matches_blake3_of_the_bytes(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    assert digest_file(path) == expected(data)


def test_digest_with_the_real_sizes(tmp_path: Path) -> None:
    # One file just over the real threshold: the parallel path with its real chunk size.
    data = os.urandom(keys._PARALLEL_MIN + 1)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    assert digest_file(path) == expected(data)


def test_known_digest_of_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty"
    path.touch()
    assert digest_file(path) == (
        "blake3:af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
    )


@pytest.mark.usefixtures("small_sizes")
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_digest_of_a_pipe_reads_to_its_end(tmp_path: Path) -> None:
    # A FIFO reports size 0 yet holds more than the threshold: it must be read to its end.
    data = os.urandom(3 * THRESHOLD + 5)
    path = tmp_path / "pipe"
    os.mkfifo(path)

    def write() -> None:
        with path.open("wb") as handle:
            handle.write(data)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        assert digest_file(path) == expected(data)
    finally:
        writer.join(timeout=5)
