"""File hashing speed: motionflow.keys.digest_file against the old one-thread 1 MiB loop.

Prints figures; it does not pass or fail. Target (issue 14): at least 4 GB/s on 2 cores for a
large file in the page cache, and an unchanged file read 0 bytes when digested again through the
cache's stat memo (``Cache.digest_path``).

The file is random bytes made in a temporary folder, read once to warm the page cache, and
removed afterwards. The two loops take turns, so a busy machine slows both alike; the figure is
the median of ``--repeat`` runs. Bytes read are ``rchar`` deltas from /proc/self/io (Linux).

Usage: python benchmarks/hashing.py [--size-mib 2048] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import blake3

from motionflow.cache.store import Cache
from motionflow.keys import digest_file

TARGET_GBPS = 4.0
MIB = 1 << 20


def baseline(path: Path) -> str:
    """The digest_file of before issue 14: one thread, a new 1 MiB bytes object per read."""
    hasher = blake3.blake3()
    with path.open("rb") as handle:
        while chunk := handle.read(MIB):
            hasher.update(chunk)
    return "blake3:" + hasher.hexdigest()


def make_file(path: Path, size: int) -> None:
    """Write ``size`` random bytes to ``path``, 16 MiB at a time."""
    with path.open("wb") as handle:
        left = size
        while left:
            step = min(left, 16 * MIB)
            handle.write(os.urandom(step))
            left -= step


def bytes_read() -> int | None:
    """Bytes this process has read so far (``rchar``), or None where /proc/self/io is missing."""
    try:
        text = Path("/proc/self/io").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key == "rchar":
            return int(value)
    return None


def probe_cost() -> int:
    """Bytes that reading /proc/self/io itself adds to ``rchar`` (taken off every delta)."""
    first, second = bytes_read(), bytes_read()
    return 0 if first is None or second is None else second - first


def speed(fn: Callable[[Path], str], path: Path, times: list[float]) -> str:
    """Run ``fn(path)`` once, append its duration to ``times``, return the digest."""
    start = time.perf_counter()
    digest = fn(path)
    times.append(time.perf_counter() - start)
    return digest


def show_memo(path: Path, root: Path) -> None:
    """Digest ``path`` twice through the cache's stat memo; print what the second time read."""
    cache = Cache(root / "cache")
    try:
        first = cache.digest_path(path)
        probe = probe_cost()
        before = bytes_read()
        second = cache.digest_path(path)
        after = bytes_read()
        assert first == second, "the memo gave another digest"
        if before is None or after is None:
            print("unchanged file, second digest: bytes read unknown (no /proc/self/io)")
        else:
            print(f"unchanged file, second digest: {after - before - probe:,} bytes read")
        cache.flush()
    finally:
        cache.close()
    # A later run: a fresh Cache finds the memo in its index (SQLite reads a few pages of it).
    cache = Cache(root / "cache")
    try:
        before = bytes_read()
        third = cache.digest_path(path)
        after = bytes_read()
        assert third == first, "the stored memo gave another digest"
        if before is not None and after is not None:
            print(
                f"unchanged file, digest in a new Cache (memo from the index): "
                f"{after - before - probe:,} bytes read (opening the SQLite index; "
                f"the file is {path.stat().st_size:,})"
            )
    finally:
        cache.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=2048, help="file size (default 2048)")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each loop (default 5)")
    args = parser.parse_args()
    size = args.size_mib * MIB

    with tempfile.TemporaryDirectory(prefix="motionflow-hashing-") as tmp:
        root = Path(tmp)
        path = root / "big.bin"
        print(f"making a {args.size_mib} MiB file in {root} ...")
        make_file(path, size)
        baseline(path)  # warm the page cache

        old: list[float] = []
        new: list[float] = []
        for _ in range(args.repeat):
            want = speed(baseline, path, old)
            got = speed(digest_file, path, new)
            assert got == want, f"digest_file gave {got}, the baseline {want}"

        cores = os.cpu_count()
        print(
            f"{args.size_mib} MiB file in the page cache, {cores} cores, median of {args.repeat}:"
        )
        for name, times in (("old 1 MiB loop, one thread", old), ("digest_file", new)):
            gbps = size / statistics.median(times) / 1e9
            best = size / min(times) / 1e9
            print(f"  {name:28s} {gbps:6.2f} GB/s (best {best:.2f})")
        ratio = statistics.median(old) / statistics.median(new)
        print(f"  speed-up {ratio:.2f}x; target {TARGET_GBPS:.1f} GB/s")

        show_memo(path, root)


if __name__ == "__main__":
    main()
