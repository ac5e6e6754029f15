"""video.prepare and image.prepare on the synthesised bad-media corpus, with real ffmpeg."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import pytest
from badmedia.make import IMAGES, VIDEOS, make_corpus
from pydantic import BaseModel, ValidationError

from motionflow.errors import MediaError
from motionflow.media.probe import probe
from motionflow.media.rules import check_image, check_video
from motionflow.stages.base import FileArtifact, StageContext, StageResult
from motionflow.stages.check import MediaCheckStage
from motionflow.stages.image_prepare import ImagePrepareParams, ImagePrepareStage, _image_geometry
from motionflow.stages.media_base import MediaStage
from motionflow.stages.registry import get_stage
from motionflow.stages.video_prepare import VideoPrepareParams, VideoPrepareStage


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every corpus file, made once for this module."""
    return asyncio.run(make_corpus(tmp_path_factory.mktemp("badmedia")))


def artifact(path: Path) -> FileArtifact:
    return FileArtifact(f"blake3:{path.name}", path, path.suffix.lower())


def run_stage(stage: Any, params: BaseModel, workdir: Path) -> StageResult:
    workdir.mkdir(parents=True, exist_ok=True)
    ctx = StageContext(workdir, "prep", "simulate", 0, "prep", lambda event: None)
    result: StageResult = asyncio.run(stage.run(params, ctx))
    return result


def prepare_video(src: Path, workdir: Path, **options: Any) -> StageResult:
    params = VideoPrepareParams(src=artifact(src), **options)
    return run_stage(VideoPrepareStage(), params, workdir)


def prepare_image(src: Path, workdir: Path, **options: Any) -> StageResult:
    params = ImagePrepareParams(src=artifact(src), **options)
    return run_stage(ImagePrepareStage(), params, workdir)


# --- the stage contract ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "cls"),
    [
        ("video.prepare", VideoPrepareStage),
        ("image.prepare", ImagePrepareStage),
        ("media.check", MediaCheckStage),
    ],
)
def test_stage_kinds_follow_the_conventions(kind: str, cls: type[MediaStage]) -> None:
    stage = get_stage(kind)
    assert type(stage) is cls
    assert isinstance(stage, MediaStage)
    assert (cls.kind, cls.version) == (kind, "2")  # 2: ffmpeg's version left the key
    assert not cls.paid
    config = cls.Params.model_config
    assert config.get("extra") == "forbid"
    assert config.get("frozen") is True
    for name, spec in cls.Params.model_fields.items():
        assert spec.description, f"{kind}.{name} has no description"
    params = cls.Params.model_construct()
    assert "ffmpeg" not in stage.environment(params, "simulate")
    assert "ffmpeg" in stage.tools(params)


@pytest.mark.slow
def test_video_params_reject_duration_and_end_together(corpus: dict[str, Path]) -> None:
    src = artifact(corpus["good"])
    with pytest.raises(ValidationError, match="duration or end"):
        VideoPrepareParams(src=src, duration=3, end=5)
    with pytest.raises(ValidationError, match="after start"):
        VideoPrepareParams(src=src, start=4, end=3)
    with pytest.raises(ValidationError):
        VideoPrepareParams(src=src, fps=120)
    with pytest.raises(ValidationError):
        VideoPrepareParams(src=src, max_mb=150)
    with pytest.raises(ValidationError):
        VideoPrepareParams(src=src, orientation="portrait")  # type: ignore[arg-type]


# --- video.prepare over the corpus ----------------------------------------------------------


@dataclass(frozen=True)
class Made:
    """A conforming output is expected."""

    path_taken: str
    size: tuple[int, int]
    fps: float
    duration: float
    audio: bool
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Refused:
    """A MediaError is expected; its message holds every fragment."""

    fragments: tuple[str, ...] = field(default_factory=tuple)


VIDEO_CASES: list[tuple[str, dict[str, Any], Made | Refused]] = [
    ("good", {}, Made("copy", (640, 360), 25, 4.0, True)),
    ("good", {"start": 1.0}, Made("copy", (640, 360), 25, 3.0, True)),  # a keyframe
    ("good", {"start": 1.0, "end": 4.0, "audio": False}, Made("copy", (640, 360), 25, 3.0, False)),
    ("good", {"start": 0.99}, Made("copy", (640, 360), 25, 3.0, True)),  # snapped to 1.0
    ("good", {"start": 0.52, "duration": 3.0}, Made("encode", (640, 360), 25, 3.0, True)),
    ("bframes", {}, Made("copy", (640, 360), 25, 4.0, True)),
    ("bframes", {"start": 1.0}, Made("copy", (640, 360), 25, 3.0, True)),
    # The end is a keyframe, but with B-frames a copy would run past it.
    ("bframes", {"end": 3.0}, Made("encode", (640, 360), 25, 3.0, True)),
    ("good", {"fps": 30}, Made("encode", (640, 360), 30, 4.0, True)),
    ("mkv_as_mp4", {}, Made("encode", (640, 360), 25, 4.0, True)),
    ("gif", {}, Made("encode", (454, 340), 24, 3.5, False, ("upscaled", "frame rate"))),
    ("webm", {}, Made("encode", (454, 340), 30, 3.5, True, ("upscaled",))),
    ("too_small", {}, Made("encode", (454, 340), 25, 3.2, True, ("upscaled 200x150",))),
    ("extreme_aspect", {}, Made("encode", (1700, 340), 25, 3.2, False, ("upscaled 1000x200",))),
    ("high_fps", {}, Made("encode", (640, 360), 60, 3.2, False, ("120 to 60 fps",))),
    ("rotated", {}, Made("encode", (360, 640), 25, 3.2, True)),
    # Keyframes every second and no B-frames: a cut at whole seconds is copied exactly.
    ("long", {"orientation": "image"}, Made("copy", (640, 360), 24, 10.0, False, ("clamped",))),
    ("long", {"start": 1}, Made("copy", (640, 360), 24, 11.0, False)),
    ("long", {"start": 0.5, "duration": 3.25}, Made("encode", (640, 360), 24, 3.25, False)),
    ("corrupt", {}, Refused(("corrupt.mp4", "cannot read media file", "Fix:"))),
    ("truncated", {}, Refused(("truncated.mp4", "truncated", "Fix:"))),
    (
        "truncated_faststart",
        {},
        Refused(("truncated_faststart.mp4", "ended early", "only", "re-download")),
    ),
    ("audio_only", {}, Refused(("audio_only.mp4", "no video stream", "Fix:"))),
    ("still_png", {}, Refused(("still.png", "still image", "image.prepare"))),
    ("too_short", {}, Refused(("too_short.mp4", "2.00 s long", "at least 3 s", "Fix:"))),
    ("uhd_120fps", {}, Refused(("uhd_120fps.mp4", "0.50 s long", "at least 3 s"))),
    ("good", {"start": 2.0}, Refused(("good.mp4", "2.00 s long", "start 2 s", "lower start"))),
    ("good", {"start": 9.0}, Refused(("good.mp4", "past the end", "4.00 s long"))),
    ("too_small", {"allow_upscale": False}, Refused(("too_small.mp4", "allow_upscale: true"))),
    ("impossible_aspect", {}, Refused(("impossible_aspect.mp4", "4000x300", "crop"))),
    ("good", {"max_mb": 0.05}, Refused(("good.mp4", "max_mb 0.05", "raise max_mb"))),
]


@pytest.mark.parametrize(
    ("name", "options", "expect"),
    VIDEO_CASES,
    ids=[
        f"{n}-{'-'.join(f'{k}={v}' for k, v in o.items()) or 'defaults'}" for n, o, _ in VIDEO_CASES
    ],
)
def test_video_prepare(
    corpus: dict[str, Path],
    tmp_path: Path,
    name: str,
    options: dict[str, Any],
    expect: Made | Refused,
) -> None:
    src = corpus[name]
    if isinstance(expect, Refused):
        with pytest.raises(MediaError) as caught:
            prepare_video(src, tmp_path / "work", **options)
        message = str(caught.value)
        assert "Traceback" not in message
        for fragment in expect.fragments:
            assert fragment in message, (fragment, message)
        return

    result = prepare_video(src, tmp_path / "work", **options)
    out = result.outputs["video"]
    info = result.outputs["info"]
    assert out == tmp_path / "work" / "video.mp4"
    assert check_video(out, orientation=options.get("orientation", "video")) == []
    probed = probe(out)
    assert probed.video_codec == "h264"
    assert probed.rotation == 0
    assert (probed.width, probed.height) == expect.size
    assert probed.fps == pytest.approx(expect.fps, abs=0.01)
    assert probed.duration == pytest.approx(expect.duration, abs=1 / expect.fps)
    assert probed.has_audio is expect.audio
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.pix_fmt == "yuv420p"
        packets = sum(1 for p in container.demux(stream) if p.size)
    assert packets == round(expect.duration * expect.fps)  # nothing hidden before or after
    assert info["path_taken"] == expect.path_taken
    assert (info["width"], info["height"]) == expect.size
    assert info["duration"] == pytest.approx(probed.duration, abs=0.001)
    assert info["has_audio"] is expect.audio
    joined = " | ".join(info["warnings"])
    for fragment in expect.warnings:
        assert fragment in joined, (fragment, joined)
    if not expect.warnings:
        assert info["warnings"] == []


def _seconds(pts: int | None, base: Fraction | None) -> float:
    assert pts is not None and base is not None
    return float(pts * base)


def _frames(path: Path) -> tuple[int, float, float]:
    """(video frames, first video pts in s, first audio pts in s or 0)."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        frames = list(container.decode(video))
        first_video = _seconds(frames[0].pts, video.time_base)
        first_audio = 0.0
        if container.streams.audio:
            container.seek(0)
            audio = container.streams.audio[0]
            packet = next(p for p in container.demux(audio) if p.pts is not None)
            first_audio = _seconds(packet.pts, audio.time_base)
    return len(frames), first_video, first_audio


def test_copy_from_a_keyframe_has_no_hidden_preroll(
    corpus: dict[str, Path], tmp_path: Path
) -> None:
    result = prepare_video(corpus["good"], tmp_path, start=1.0)
    assert result.outputs["info"]["path_taken"] == "copy"
    frames, first_video, first_audio = _frames(result.outputs["video"])
    assert frames == 75  # 3 s at 25 fps: nothing before the cut
    assert first_video == 0.0
    # AAC re-encoded from the cut: only the encoder's standard priming, not the copied
    # packets of the seconds before start.
    assert first_audio >= -0.05


def test_encode_cut_is_frame_exact(corpus: dict[str, Path], tmp_path: Path) -> None:
    result = prepare_video(corpus["good"], tmp_path, start=0.52, duration=3.0)
    frames, first_video, _ = _frames(result.outputs["video"])
    assert frames == 75
    assert first_video == 0.0


def test_size_cap_is_honoured(corpus: dict[str, Path], tmp_path: Path) -> None:
    result = prepare_video(corpus["good"], tmp_path, max_mb=0.3, start=0.5, duration=3)
    out = result.outputs["video"]
    assert out.stat().st_size <= 300_000
    assert result.outputs["info"]["path_taken"] == "encode"


def test_copy_is_refused_when_the_source_is_over_max_mb(
    corpus: dict[str, Path], tmp_path: Path
) -> None:
    # good.mp4 is ~0.96 MB: a copy would break max_mb 0.5, so it is encoded under the cap.
    result = prepare_video(corpus["good"], tmp_path, max_mb=0.5)
    assert result.outputs["info"]["path_taken"] == "encode"
    assert result.outputs["video"].stat().st_size <= 500_000


def test_only_the_workdir_is_written(corpus: dict[str, Path], tmp_path: Path) -> None:
    before = sorted(p.name for p in corpus["good"].parent.iterdir())
    prepare_video(corpus["good"], tmp_path / "work", start=0.52, duration=3.0)
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == ["video.mp4"]
    assert sorted(p.name for p in corpus["good"].parent.iterdir()) == before


# --- image.prepare --------------------------------------------------------------------------


def _pixel(path: Path, x: int, y: int) -> tuple[int, int, int]:
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0)).reformat(format="rgb24")
    plane = frame.planes[0]
    data = bytes(plane)
    offset = y * plane.line_size + 3 * x
    r, g, b = data[offset : offset + 3]
    return r, g, b


def _pix_fmt(path: Path) -> str:
    with av.open(str(path)) as container:
        return str(container.streams.video[0].codec_context.pix_fmt)


IMAGE_CASES: list[tuple[str, dict[str, Any], tuple[int, int], str, tuple[str, ...]]] = [
    ("tiny_png", {}, (340, 340), "png", ("upscaled 100x100 to 340x340",)),
    ("wide_png", {}, (2000, 800), "png", ("padded to 2000x800", "2.50")),
    ("wide_png", {"fit": "crop"}, (850, 340), "png", ("cropped 2000x300 to 750x300",)),
    ("alpha_png", {"format": "jpeg", "pad_color": "white"}, (400, 400), "mjpeg", ("flattened",)),
    ("alpha_png", {}, (400, 400), "png", ()),
    ("webp", {}, (500, 400), "png", ()),
    ("exif_jpeg", {}, (340, 680), "png", ("rotated 90° clockwise", "upscaled 200x400 to 340x680")),
    ("big_photo", {"format": "jpeg"}, (4096, 2458), "mjpeg", ("downscaled 5000x3000",)),
    ("png_named_jpg", {"format": "jpeg"}, (400, 400), "mjpeg", ()),
]


@pytest.mark.parametrize(
    ("name", "options", "size", "codec", "operations"),
    IMAGE_CASES,
    ids=[
        f"{n}-{'-'.join(f'{k}={v}' for k, v in o.items()) or 'defaults'}"
        for n, o, *_ in IMAGE_CASES
    ],
)
def test_image_prepare(
    corpus: dict[str, Path],
    tmp_path: Path,
    name: str,
    options: dict[str, Any],
    size: tuple[int, int],
    codec: str,
    operations: tuple[str, ...],
) -> None:
    result = prepare_image(corpus[name], tmp_path / "work", **options)
    out = result.outputs["image"]
    info = result.outputs["info"]
    assert out.suffix == (".jpg" if codec == "mjpeg" else ".png")
    assert check_image(out) == []
    probed = probe(out)
    assert (probed.width, probed.height) == size
    assert probed.video_codec == codec
    assert probed.rotation == 0
    assert (info["width"], info["height"]) == size
    assert info["format"] == ("jpeg" if codec == "mjpeg" else "png")
    joined = " | ".join(info["operations"])
    for fragment in operations:
        assert fragment in joined, (fragment, joined)
    if not operations:
        assert info["operations"] == []


def test_alpha_is_flattened_for_jpeg_and_kept_for_png(
    corpus: dict[str, Path], tmp_path: Path
) -> None:
    jpeg = prepare_image(corpus["alpha_png"], tmp_path / "j", format="jpeg", pad_color="white")
    left = _pixel(jpeg.outputs["image"], 50, 200)  # transparent in the source
    right = _pixel(jpeg.outputs["image"], 350, 200)  # opaque red
    assert min(left) >= 245, left
    assert right[0] >= 240 and max(right[1:]) <= 20, right
    png = prepare_image(corpus["alpha_png"], tmp_path / "p")
    assert _pix_fmt(png.outputs["image"]) == "rgba"


def test_exif_rotation_turns_the_picture(corpus: dict[str, Path], tmp_path: Path) -> None:
    # Orientation 6: the stored 400x200 picture is shown turned 90° clockwise, so the stored
    # top-left corner ends at the top-right.
    plain = prepare_image(corpus["exif_jpeg"], tmp_path / "r")
    out = plain.outputs["image"]
    with av.open(str(corpus["exif_jpeg"])) as container:
        stored = next(container.decode(video=0)).reformat(format="rgb24")
    corner = bytes(stored.planes[0])[0:3]
    assert max(abs(a - b) for a, b in zip(_pixel(out, 339, 0), corner, strict=True)) <= 40


def test_pad_colour_errors_are_actionable(corpus: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="not a colour"):
        ImagePrepareParams(src=artifact(corpus["wide_png"]), pad_color="#12")
    with pytest.raises(MediaError, match=r"pad_color 'blak'.*Fix: use a colour name"):
        prepare_image(corpus["wide_png"], tmp_path, pad_color="blak")


def test_image_max_mb_lowers_quality_then_size(corpus: dict[str, Path], tmp_path: Path) -> None:
    result = prepare_image(corpus["noisy_png"], tmp_path / "j", format="jpeg", max_mb=0.1)
    assert result.outputs["image"].stat().st_size <= 100_000
    assert "lowered JPEG quality" in " ".join(result.outputs["info"]["operations"])
    png = prepare_image(corpus["noisy_png"], tmp_path / "p", max_mb=0.5)
    assert png.outputs["image"].stat().st_size <= 500_000
    assert "downscaled to fit max_mb" in " ".join(png.outputs["info"]["operations"])
    assert min(probe(png.outputs["image"]).width, probe(png.outputs["image"]).height) >= 340


def test_text_under_an_image_name_is_refused_when_the_recipe_is_checked(
    corpus: dict[str, Path],
) -> None:
    with pytest.raises(ValidationError, match="is not an image or a video: it holds text"):
        ImagePrepareParams(src=artifact(corpus["text_png"]))


@pytest.mark.parametrize("name", ["corrupt", "audio_only"])
def test_unreadable_images_are_media_errors(
    corpus: dict[str, Path], tmp_path: Path, name: str
) -> None:
    with pytest.raises(MediaError) as caught:
        prepare_image(corpus[name], tmp_path)
    assert repr(str(corpus[name])) in str(caught.value)
    assert "Fix:" in str(caught.value)


@pytest.mark.parametrize(
    ("size", "fit", "canvas"),
    [
        ((100, 100), "pad", (340, 340)),
        ((2000, 300), "pad", (2000, 800)),
        ((300, 2000), "pad", (800, 2000)),
        ((2000, 300), "crop", (850, 340)),
        ((300, 2000), "crop", (340, 850)),
        ((8000, 6000), "pad", (4096, 3072)),
        ((341, 853), "pad", (342, 853)),
        ((10000, 10), "pad", (4096, 1639)),
    ],
)
def test_image_geometry_meets_the_rules(
    size: tuple[int, int], fit: str, canvas: tuple[int, int]
) -> None:
    geometry = _image_geometry(*size, fit, 4096)
    assert geometry.canvas == canvas
    width, height = geometry.canvas
    assert min(width, height) >= 340
    assert 0.4 <= width / height <= 2.5
    assert geometry.content[0] <= width and geometry.content[1] <= height


def test_corpus_names_are_unique() -> None:
    assert not set(VIDEOS) & set(IMAGES)
