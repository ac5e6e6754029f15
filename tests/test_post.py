"""Tests for the post-processing stages (transcode, thumbnail, GIF, concat, audio) with ffmpeg."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import av
import pytest
from pydantic import BaseModel, ValidationError

from motionflow.errors import MediaError
from motionflow.media.ffmpeg import run_ffmpeg
from motionflow.media.probe import probe
from motionflow.stages.base import FileArtifact, StageContext, StageResult
from motionflow.stages.media_base import MediaStage
from motionflow.stages.post import (
    VideoAudioStage,
    VideoConcatStage,
    VideoGifStage,
    VideoThumbnailStage,
    VideoTranscodeStage,
)
from motionflow.stages.registry import get_stage

LAVFI = ["-f", "lavfi", "-i"]
X264 = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
STAGES: list[type[MediaStage]] = [
    VideoTranscodeStage,
    VideoThumbnailStage,
    VideoGifStage,
    VideoConcatStage,
    VideoAudioStage,
]


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny clips: with sound, silent (other size and rate), odd-sized, and a tone."""
    d = tmp_path_factory.mktemp("post-media")
    out = {
        "av": d / "av.mp4",
        "silent": d / "silent.mp4",
        "odd": d / "odd.mp4",
        "tone": d / "tone.m4a",
        "text": d / "notes.mp4",
    }
    out["text"].write_text("not a video\n")

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
                [
                    *LAVFI,
                    "testsrc=s=161x121:r=25:d=0.5",
                    "-c:v",
                    "libx264",
                    "-preset",
                    "ultrafast",
                    "-pix_fmt",
                    "yuv444p",
                    str(out["odd"]),
                ],
                what="make odd.mp4",
            ),
            run_ffmpeg(
                [*LAVFI, "sine=f=220:d=3", "-c:a", "aac", str(out["tone"])], what="make tone"
            ),
        )

    asyncio.run(make())
    return out


def art(path: Path) -> FileArtifact:
    return FileArtifact(f"blake3:{path.name}", path, path.suffix)


def run(stage: MediaStage, workdir: Path, **params: Any) -> StageResult:
    workdir.mkdir(parents=True, exist_ok=True)
    ctx = StageContext(
        workdir=workdir, stage="s", provider="simulate", take=0, label="s[v]", emit=lambda e: None
    )
    return asyncio.run(stage.run(stage.Params(**params), ctx))


def only_output(result: StageResult, name: str, workdir: Path) -> Path:
    path = result.outputs[name]
    assert isinstance(path, Path)
    assert path.parent == workdir
    assert sorted(workdir.iterdir()) == [path]
    return path


# --- contract -------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", STAGES, ids=lambda c: c.kind)
def test_stage_contract(cls: type[MediaStage]) -> None:
    stage = get_stage(cls.kind)
    assert type(stage) is cls
    assert cls.version == "2"  # 2: ffmpeg's version left the key (CHANGELOG)
    assert not cls.paid and not cls.static and not cls.takes_allowed
    params: type[BaseModel] = cls.Params
    assert params.model_config.get("extra") == "forbid"
    assert params.model_config.get("frozen") is True
    for name, field in params.model_fields.items():
        assert field.description, f"{cls.kind}.{name} has no description"
    assert "ffmpeg" not in stage.environment(params.model_construct(), "simulate")
    assert stage.tools(params.model_construct())["ffmpeg"].startswith("ffmpeg version")


# --- video.transcode ------------------------------------------------------------------------


def test_transcode_h264_scaled_resampled(media: dict[str, Path], tmp_path: Path) -> None:
    stage = VideoTranscodeStage()
    result = run(stage, tmp_path, src=art(media["av"]), scale="160:-2", fps=12, preset="ultrafast")
    video = only_output(result, "video", tmp_path)
    assert video.suffix == ".mp4"
    info = probe(video)
    assert (info.video_codec, info.width, info.height) == ("h264", 160, 120)
    assert info.fps == pytest.approx(12.0)
    assert info.has_audio
    assert info.duration == pytest.approx(1.5, abs=1 / 12)


def test_transcode_h265_without_audio(media: dict[str, Path], tmp_path: Path) -> None:
    result = run(
        VideoTranscodeStage(),
        tmp_path,
        src=art(media["av"]),
        codec="h265",
        crf=30,
        scale="-2:120",
        audio=False,
        preset="ultrafast",
    )
    info = probe(only_output(result, "video", tmp_path))
    assert (info.video_codec, info.width, info.height) == ("hevc", 160, 120)
    assert not info.has_audio


def test_transcode_vp9_is_webm_with_opus(media: dict[str, Path], tmp_path: Path) -> None:
    result = run(
        VideoTranscodeStage(),
        tmp_path,
        src=art(media["av"]),
        codec="vp9",
        crf=40,
        scale="160:-1",
        preset="ultrafast",
    )
    video = only_output(result, "video", tmp_path)
    assert video.suffix == ".webm"
    info = probe(video)
    assert (info.video_codec, info.width, info.height) == ("vp9", 160, 120)
    assert info.has_audio
    with av.open(str(video)) as container:
        assert container.streams.audio[0].codec_context.name == "opus"


def test_transcode_odd_source_becomes_even(media: dict[str, Path], tmp_path: Path) -> None:
    result = run(VideoTranscodeStage(), tmp_path, src=art(media["odd"]), preset="ultrafast")
    info = probe(only_output(result, "video", tmp_path))
    assert (info.width, info.height) == (160, 120)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"scale": "1281:-2"}, "odd size"),
        ({"scale": "1280x720"}, "width:height"),
        ({"scale": "-2:-1"}, "gives no size"),
        ({"preset": "fastest"}, "unknown preset 'fastest'"),
        ({"crf": 52}, "less than or equal to 51"),
        ({"fps": 0}, "greater than 0"),
        ({"bitrate": "1M"}, "Extra inputs"),
    ],
)
def test_transcode_rejects_bad_params(
    media: dict[str, Path], changes: dict[str, Any], match: str
) -> None:
    with pytest.raises(ValidationError, match=match):
        VideoTranscodeStage.Params(src=art(media["av"]), **changes)


def test_unreadable_source_is_a_media_error_naming_it(
    media: dict[str, Path], tmp_path: Path
) -> None:
    with pytest.raises(MediaError, match=r"notes\.mp4"):
        run(VideoTranscodeStage(), tmp_path, src=art(media["text"]))


def test_audio_only_source_is_a_media_error(media: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(MediaError, match=r"video\.gif: src .*tone\.m4a.* has no video stream"):
        run(VideoGifStage(), tmp_path, src=art(media["tone"]))


# --- video.thumbnail ------------------------------------------------------------------------


def test_thumbnail_jpeg_scaled(media: dict[str, Path], tmp_path: Path) -> None:
    result = run(VideoThumbnailStage(), tmp_path, src=art(media["av"]), at=0.5, width=100)
    image = only_output(result, "image", tmp_path)
    assert image.name == "thumbnail.jpg"
    info = probe(image)
    assert (info.video_codec, info.width, info.height) == ("mjpeg", 100, 75)


@pytest.mark.parametrize("at", [0.0, 0.99, 99.0], ids=["start", "last-frame", "past-end"])
def test_thumbnail_png_clamped_to_the_clip(
    media: dict[str, Path], tmp_path: Path, at: float
) -> None:
    result = run(VideoThumbnailStage(), tmp_path, src=art(media["silent"]), at=at, format="png")
    image = only_output(result, "image", tmp_path)
    assert image.name == "thumbnail.png"
    info = probe(image)
    assert (info.video_codec, info.width, info.height) == ("png", 240, 160)


def _rgb(frame: Any) -> bytes:
    return bytes(frame.reformat(format="rgb24").planes[0])


@pytest.mark.parametrize(("at", "shown"), [(0.55, 13), (0.56, 14), (1.0, 25), (9.0, 37)])
def test_thumbnail_is_the_frame_on_screen(
    media: dict[str, Path], tmp_path: Path, at: float, shown: int
) -> None:
    # 25 fps: frame 13 is on screen from 0.52 s to 0.56 s; the clip's last frame is 37.
    result = run(VideoThumbnailStage(), tmp_path, src=art(media["av"]), at=at, format="png")
    with av.open(str(media["av"])) as clip:
        frames = [_rgb(f) for f in clip.decode(video=0)]
    with av.open(str(result.outputs["image"])) as image:
        picture = _rgb(next(image.decode(video=0)))
    assert frames.index(picture) == shown


def test_thumbnail_negative_time_is_an_error(media: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(MediaError, match=r"video\.thumbnail: at is -1\.0 seconds"):
        run(VideoThumbnailStage(), tmp_path, src=art(media["av"]), at=-1)


# --- video.gif ------------------------------------------------------------------------------


def test_gif_loops_and_animates(media: dict[str, Path], tmp_path: Path) -> None:
    result = run(
        VideoGifStage(), tmp_path, src=art(media["av"]), start=0.5, duration=1, width=160, fps=10
    )
    gif = only_output(result, "gif", tmp_path)
    data = gif.read_bytes()
    assert data[:6] == b"GIF89a"
    assert b"NETSCAPE2.0\x03\x01\x00\x00" in data  # loop count 0: forever
    info = probe(gif)
    assert (info.video_codec, info.width, info.height) == ("gif", 160, 120)
    with av.open(str(gif)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert 5 < frames <= 11


def test_gif_start_past_the_end_is_an_error(media: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(MediaError, match=r"start 5 s is past the end of .*av\.mp4"):
        run(VideoGifStage(), tmp_path, src=art(media["av"]), start=5)


# --- video.concat ---------------------------------------------------------------------------


def test_concat_normalises_and_fills_silence(media: dict[str, Path], tmp_path: Path) -> None:
    # 1.5 s 320x240@25 with sound, then 1 s 240x160@30 without: sizes, rates and sound differ.
    result = run(VideoConcatStage(), tmp_path, videos=[art(media["av"]), art(media["silent"])])
    info = probe(only_output(result, "video", tmp_path))
    assert (info.video_codec, info.width, info.height) == ("h264", 320, 240)
    assert info.fps == pytest.approx(25.0)
    assert info.duration == pytest.approx(2.5, abs=1 / 25)
    assert info.has_audio
    with av.open(str(result.outputs["video"])) as container:
        audio = container.streams.audio[0]
        assert audio.duration is not None and audio.time_base is not None
        assert float(audio.duration * audio.time_base) == pytest.approx(2.5, abs=0.05)


def test_concat_with_explicit_size_rate_and_no_audio(
    media: dict[str, Path], tmp_path: Path
) -> None:
    result = run(
        VideoConcatStage(),
        tmp_path,
        videos=[art(media["silent"]), art(media["av"]), art(media["odd"])],
        width=200,
        height=200,
        fps=10,
        audio=False,
    )
    info = probe(only_output(result, "video", tmp_path))
    assert (info.width, info.height) == (200, 200)
    assert info.fps == pytest.approx(10.0)
    assert info.duration == pytest.approx(3.0, abs=1 / 10)
    assert not info.has_audio


def test_concat_of_one_video_is_an_error(media: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(MediaError, match=r"video\.concat: videos has 1 item.*at least 2"):
        run(VideoConcatStage(), tmp_path, videos=[art(media["av"])])


def test_concat_names_the_bad_item(media: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(MediaError, match=r"notes\.mp4"):
        run(VideoConcatStage(), tmp_path, videos=[art(media["av"]), art(media["text"])])


# --- video.audio ----------------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "sound"), [("keep", True), ("strip", False)])
def test_audio_keep_and_strip_copy_the_picture(
    media: dict[str, Path], tmp_path: Path, mode: str, sound: bool
) -> None:
    result = run(VideoAudioStage(), tmp_path, src=art(media["av"]), mode=mode)
    video = only_output(result, "video", tmp_path)
    assert video.suffix == ".mp4"
    info = probe(video)
    assert (info.video_codec, info.width, info.height) == ("h264", 320, 240)
    assert info.has_audio is sound
    assert info.duration == pytest.approx(1.5, abs=1 / 25)
    with av.open(str(video)) as out, av.open(str(media["av"])) as src:
        packets = [bytes(p) for p in out.demux(video=0) if p.size]
        original = [bytes(p) for p in src.demux(video=0) if p.size]
    assert packets == original  # stream-copied, not re-encoded


@pytest.mark.parametrize(("shortest", "length"), [(True, 1.0), (False, 3.0)])
def test_audio_replace(
    media: dict[str, Path], tmp_path: Path, shortest: bool, length: float
) -> None:
    result = run(
        VideoAudioStage(),
        tmp_path,
        src=art(media["silent"]),
        mode="replace",
        audio=art(media["tone"]),
        shortest=shortest,
    )
    info = probe(only_output(result, "video", tmp_path))
    assert info.has_audio
    assert info.video_codec == "h264"
    assert info.duration == pytest.approx(length, abs=0.1)


def test_audio_replace_needs_audio(media: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(MediaError) as info:
        run(VideoAudioStage(), tmp_path, src=art(media["av"]), mode="replace")
    assert "video.audio: mode replace needs audio: ${" in str(info.value)


def test_audio_replace_with_a_silent_file(media: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(MediaError, match=r"silent\.mp4.* has no audio track"):
        run(
            VideoAudioStage(),
            tmp_path,
            src=art(media["av"]),
            mode="replace",
            audio=art(media["silent"]),
        )
