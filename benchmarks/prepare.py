"""video.prepare against the same ffmpeg command run by hand: the stage's overhead.

Prints figures; it does not pass or fail. Target: the stage (probe, keyframe scan, encode,
output check) within 10% of the bare ffmpeg encode.

The source is a 60 s 1080p25 clip (testsrc2 + sine, keyframes every 7 s, so the cut at
20..30 s is not on a keyframe and must be encoded), synthesised once and kept in the temp dir.

Usage: python benchmarks/prepare.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from motionflow.media.ffmpeg import find_ffmpeg
from motionflow.media.rules import MB
from motionflow.stages.base import FileArtifact, StageContext
from motionflow.stages.video_prepare import (
    AUDIO_BITRATE,
    X264_CRF,
    X264_PRESET,
    VideoPrepareParams,
    VideoPrepareStage,
)

START, DURATION, FPS = 20.0, 10.0, 25
CACHE = Path(tempfile.gettempdir()) / "motionflow-bench"


def source() -> Path:
    """The 60 s 1080p source, made on first use."""
    path = CACHE / "src-60s-1080p25.mp4"
    if path.is_file():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part.mp4")
    subprocess.run(
        [
            find_ffmpeg(),
            *("-hide_banner", "-loglevel", "error", "-nostdin", "-y"),
            *("-f", "lavfi", "-i", f"testsrc2=s=1920x1080:r={FPS}:d=60"),
            *("-f", "lavfi", "-i", "sine=f=440:d=60"),
            *("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "175"),
            *("-c:a", "aac", "-shortest", str(partial)),
        ],
        check=True,
    )
    partial.rename(path)
    return path


def direct_command(src: Path, dest: Path) -> list[str]:
    """What video.prepare runs for this cut, written out by hand (same settings, same order)."""
    cap = int(100 * MB * 0.95 * 8 / (DURATION + 1.0) - AUDIO_BITRATE)
    return [
        find_ffmpeg(),
        *("-hide_banner", "-nostdin", "-y"),
        *("-ss", f"{START:.6f}", "-i", str(src), "-t", f"{DURATION:.6f}", "-map", "0:V:0"),
        *("-map", "0:a:0", "-c:a", "aac", "-b:a", str(AUDIO_BITRATE), "-ac", "2"),
        *("-vf", f"fps={FPS},format=yuv420p"),
        *("-c:v", "libx264", "-preset", X264_PRESET, "-crf", str(X264_CRF)),
        *("-maxrate", str(cap), "-bufsize", str(cap), "-profile:v", "high", "-pix_fmt", "yuv420p"),
        *("-sn", "-dn", "-movflags", "+faststart", "-map_metadata", "-1", "-map_chapters", "-1"),
        *("-fflags", "+bitexact", "-f", "mp4", str(dest)),
    ]


def time_direct(src: Path, work: Path) -> tuple[float, Path]:
    dest = work / "direct.mp4"
    began = time.perf_counter()
    subprocess.run(direct_command(src, dest), check=True, capture_output=True)
    return time.perf_counter() - began, dest


def time_stage(src: Path, work: Path) -> tuple[float, Path, str]:
    work.mkdir(parents=True, exist_ok=True)
    params = VideoPrepareParams(
        src=FileArtifact("blake3:bench", src, ".mp4"), start=START, duration=DURATION
    )
    ctx = StageContext(work, "clip", "simulate", 0, "clip", print)  # no events expected
    began = time.perf_counter()
    result = asyncio.run(VideoPrepareStage().run(params, ctx))
    elapsed = time.perf_counter() - began
    return elapsed, result.outputs["video"], result.outputs["info"]["path_taken"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    began = time.perf_counter()
    src = source()
    print(
        f"source: {src} ({src.stat().st_size / MB:.1f} MB, ready in "
        f"{time.perf_counter() - began:.1f} s)"
    )
    stage_times: list[float] = []
    direct_times: list[float] = []
    identical: list[bool] = []
    with tempfile.TemporaryDirectory(prefix="motionflow-bench-") as tmp:
        VideoPrepareStage().environment(VideoPrepareParams.model_construct(), "simulate")
        for i in range(args.repeat):  # interleaved, so drift hits both alike
            seconds, made, path_taken = time_stage(src, Path(tmp) / f"stage{i}")
            stage_times.append(seconds)
            seconds, direct = time_direct(src, Path(tmp))
            direct_times.append(seconds)
            identical.append(made.read_bytes() == direct.read_bytes())
            print(
                f"  run {i + 1}: stage {stage_times[-1]:.2f} s ({path_taken}), "
                f"ffmpeg {direct_times[-1]:.2f} s"
            )
    stage, direct = statistics.median(stage_times), statistics.median(direct_times)
    print(f"video.prepare {START:g}..{START + DURATION:g} s of 1080p25, median of {args.repeat}:")
    print(f"  stage  {stage:6.2f} s")
    print(f"  ffmpeg {direct:6.2f} s")
    print(f"  overhead {100 * (stage - direct) / direct:+.1f}% (target: within 10%)")
    fastest = min(stage_times) - min(direct_times)
    print(f"  best-of-{args.repeat} difference {fastest:+.2f} s (less sensitive to a busy machine)")
    print(f"  outputs byte-identical: {all(identical)}")


if __name__ == "__main__":
    main()
