"""Tests for the ffmpeg wrapper, PyAV probing, the simulated render and the sample assets."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest

from motionflow.errors import MediaError, StageError, ToolNotFoundError
from motionflow.fakeapi.render import render_simulated_video
from motionflow.media.ffmpeg import ENV_FFMPEG, ffmpeg_version, find_ffmpeg, run_ffmpeg
from motionflow.media.probe import MediaInfo, probe
from motionflow.media.samples import make_sample_assets

LAVFI = ["-f", "lavfi", "-i"]
X264 = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny synthesised media: clips with and without audio, a rotated clip, a PNG."""
    d = tmp_path_factory.mktemp("media")
    out = {
        "av": d / "av.mp4",
        "silent": d / "silent.mp4",
        "rotated": d / "rotated.mp4",
        "png": d / "still.png",
    }

    async def make() -> None:
        await asyncio.gather(
            run_ffmpeg(
                [
                    *(*LAVFI, "testsrc=s=320x240:r=25:d=1.5", *LAVFI, "sine=f=440:d=1.5"),
                    *(*X264, "-c:a", "aac", "-t", "1.5", str(out["av"])),
                ],
                what="make av.mp4",
            ),
            run_ffmpeg(
                [*LAVFI, "testsrc=s=240x160:r=30:d=1", *X264, str(out["silent"])],
                what="make silent.mp4",
            ),
            run_ffmpeg(
                [*LAVFI, "testsrc=s=200x300", "-frames:v", "1", str(out["png"])],
                what="make still.png",
            ),
        )
        await run_ffmpeg(
            ["-display_rotation", "90", "-i", str(out["av"]), "-c", "copy", str(out["rotated"])],
            what="make rotated.mp4",
        )

    asyncio.run(make())
    return out


# --- probe ----------------------------------------------------------------------------------


def test_probe_video_with_audio(media: dict[str, Path]) -> None:
    info = probe(media["av"])
    assert isinstance(info, MediaInfo)
    assert info.duration == pytest.approx(1.5, abs=1 / 25)
    assert (info.width, info.height) == (320, 240)
    assert info.fps == pytest.approx(25.0)
    assert info.video_codec == "h264"
    assert info.has_video
    assert info.has_audio
    assert info.rotation == 0
    assert "mp4" in info.format_name


def test_probe_video_without_audio(media: dict[str, Path]) -> None:
    info = probe(media["silent"])
    assert info.duration == pytest.approx(1.0, abs=1 / 30)
    assert (info.width, info.height, info.fps) == (240, 160, 30.0)
    assert info.has_video
    assert not info.has_audio


def test_probe_reads_display_rotation(media: dict[str, Path]) -> None:
    assert probe(media["rotated"]).rotation == 90


def test_probe_png(media: dict[str, Path]) -> None:
    info = probe(media["png"])
    assert info.duration == 0.0
    assert (info.width, info.height) == (200, 300)
    assert info.video_codec == "png"
    assert info.has_video
    assert not info.has_audio


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("empty.mp4", b""),
        ("notes.mp4", b"this is a text file, not a video\n"),
        ("truncated.mp4", None),  # the first bytes of a real MP4
        ("missing.mp4", ...),
    ],
)
def test_probe_bad_files_raise_media_error_naming_the_file(
    media: dict[str, Path], tmp_path: Path, name: str, content: bytes | None
) -> None:
    path = tmp_path / name
    if content is None:
        path.write_bytes(media["av"].read_bytes()[:2000])
    elif isinstance(content, bytes):
        path.write_bytes(content)
    with pytest.raises(MediaError) as info:
        probe(path)
    assert repr(str(path)) in str(info.value)
    assert not isinstance(info.value, ToolNotFoundError)


def test_probe_directory_is_a_media_error(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="not a regular file"):
        probe(tmp_path)


# --- ffmpeg binary and runner ---------------------------------------------------------------


def test_find_ffmpeg_honours_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(ENV_FFMPEG, raising=False)
    real = find_ffmpeg()
    alias = tmp_path / "my-ffmpeg"
    alias.symlink_to(real)
    monkeypatch.setenv(ENV_FFMPEG, str(alias))
    assert find_ffmpeg() == str(alias)


def test_find_ffmpeg_env_missing_binary(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ENV_FFMPEG, str(tmp_path / "no-such-ffmpeg"))
    with pytest.raises(ToolNotFoundError, match=ENV_FFMPEG):
        find_ffmpeg()


def test_find_ffmpeg_env_not_executable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "ffmpeg"
    fake.write_text("not a program\n")
    fake.chmod(0o644)
    monkeypatch.setenv(ENV_FFMPEG, str(fake))
    with pytest.raises(ToolNotFoundError, match="not executable"):
        find_ffmpeg()


def test_ffmpeg_version_is_stable() -> None:
    binary = find_ffmpeg()
    first = ffmpeg_version(binary)
    assert first.startswith("ffmpeg version ")
    assert "\n" not in first
    assert ffmpeg_version(binary) == first


def test_ffmpeg_version_of_a_non_ffmpeg_raises(tmp_path: Path) -> None:
    with pytest.raises(ToolNotFoundError, match="no-such"):
        ffmpeg_version(str(tmp_path / "no-such"))


def test_run_ffmpeg_failure_carries_what_and_stderr(tmp_path: Path) -> None:
    missing = tmp_path / "absent.mp4"
    with pytest.raises(MediaError) as info:
        asyncio.run(run_ffmpeg(["-i", str(missing), str(tmp_path / "o.mp4")], what="trim it"))
    message = str(info.value)
    assert "trim it" in message
    assert "No such file or directory" in message


def test_run_ffmpeg_cancel_kills_the_process(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A wrapper that records ffmpeg's pid (exec keeps it) lets us check it is really gone.
    real = find_ffmpeg()
    pidfile = tmp_path / "pid"
    wrapper = tmp_path / "ffmpeg-wrapper"
    wrapper.write_text(f'#!/bin/sh\necho $$ > "{pidfile}"\nexec "{real}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv(ENV_FFMPEG, str(wrapper))

    async def scenario() -> None:
        task = asyncio.create_task(
            run_ffmpeg(["-re", *LAVFI, "testsrc=s=64x64:r=5", "-f", "null", "-"], what="spin")
        )
        for _ in range(100):
            await asyncio.sleep(0.05)
            if pidfile.exists() and pidfile.read_text().strip():
                break
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    pid = int(pidfile.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


# --- simulated render -----------------------------------------------------------------------


def test_render_std_with_reference_audio(media: dict[str, Path], tmp_path: Path) -> None:
    dest = tmp_path / "take:1.mp4"  # not a "take:" protocol URL
    label = "outfit=red, it's [v1]; 100% {x}: ok"  # every filter-graph metacharacter
    asyncio.run(
        render_simulated_video(
            image=media["png"],
            video=media["av"],
            dest=dest,
            mode="std",
            seconds=1.5,
            keep_original_sound=True,
            label=label,
        )
    )
    info = probe(dest)
    assert (info.width, info.height) == (1280, 720)
    assert info.duration == pytest.approx(1.5, abs=1 / 24)
    assert info.fps == pytest.approx(24.0)
    assert info.video_codec == "h264"
    assert info.has_audio
    assert list(tmp_path.iterdir()) == [dest]


@pytest.mark.parametrize(
    ("reference", "keep"), [("av", False), ("silent", True)], ids=["sound-off", "ref-silent"]
)
def test_render_has_no_audio_unless_kept_and_present(
    media: dict[str, Path], tmp_path: Path, reference: str, keep: bool
) -> None:
    dest = tmp_path / "take.mp4"
    # 1.8 s from a 1.0 s reference also exercises the loop.
    asyncio.run(
        render_simulated_video(
            image=media["png"],
            video=media[reference],
            dest=dest,
            mode="std",
            seconds=1.8,
            keep_original_sound=keep,
            label="x",
        )
    )
    info = probe(dest)
    assert info.duration == pytest.approx(1.8, abs=1 / 24)
    assert not info.has_audio
    assert list(tmp_path.iterdir()) == [dest]


@pytest.mark.slow
def test_render_cancelled_leaves_nothing(media: dict[str, Path], tmp_path: Path) -> None:
    dest = tmp_path / "take.mp4"

    async def scenario() -> None:
        task = asyncio.create_task(
            render_simulated_video(
                image=media["png"],
                video=media["av"],
                dest=dest,
                mode="pro",
                seconds=30,
                keep_original_sound=True,
                label="cancel me",
            )
        )
        await asyncio.sleep(0.8)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("mode", "seconds"), [("ultra", 2.0), ("std", 0.0), ("std", -1.0)])
def test_render_rejects_bad_parameters(
    media: dict[str, Path], tmp_path: Path, mode: str, seconds: float
) -> None:
    with pytest.raises(StageError):
        asyncio.run(
            render_simulated_video(
                image=media["png"],
                video=media["av"],
                dest=tmp_path / "x.mp4",
                mode=mode,
                seconds=seconds,
                keep_original_sound=True,
                label="x",
            )
        )
    assert list(tmp_path.iterdir()) == []


def test_render_unreadable_reference_is_a_media_error(
    media: dict[str, Path], tmp_path: Path
) -> None:
    bogus = tmp_path / "ref.mp4"
    bogus.write_text("not a video")
    with pytest.raises(MediaError, match=r"ref\.mp4"):
        asyncio.run(
            render_simulated_video(
                image=media["png"],
                video=bogus,
                dest=tmp_path / "x.mp4",
                mode="std",
                seconds=1.0,
                keep_original_sound=True,
                label="x",
            )
        )
    assert list(tmp_path.iterdir()) == [bogus]


# --- sample assets --------------------------------------------------------------------------


def test_sample_assets_meet_the_media_rules(tmp_path: Path) -> None:
    hero, dance = asyncio.run(make_sample_assets(tmp_path / "assets"))
    assert sorted(p.name for p in (tmp_path / "assets").iterdir()) == ["dance.mp4", "hero.png"]

    image = probe(hero)
    assert image.video_codec == "png"
    assert (image.width, image.height) == (512, 768)
    assert min(image.width, image.height) >= 340
    assert 0.4 <= image.width / image.height <= 2.5
    assert hero.stat().st_size < 10 * 1024 * 1024

    clip = probe(dance)
    assert clip.video_codec == "h264"
    assert (clip.width, clip.height) == (640, 360)
    assert clip.fps == pytest.approx(25.0)
    assert clip.duration == pytest.approx(4.0, abs=0.05)
    assert clip.has_audio
    assert dance.stat().st_size < 1024 * 1024
