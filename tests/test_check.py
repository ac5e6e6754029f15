"""The media rules, scene detection, preflight and the media.check stage, on real files."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from badmedia.make import make_corpus
from pydantic import ValidationError

from motionflow.errors import MediaError
from motionflow.media.rules import RULES, Violation, check_image, check_video
from motionflow.media.scenes import longest_clean_span, scene_cuts
from motionflow.stages.base import FileArtifact, StageContext, StageResult
from motionflow.stages.check import MediaCheckParams, MediaCheckStage, preflight

NEEDED = [
    "good",
    "corrupt",
    "truncated",
    "mkv_as_mp4",
    "gif",
    "webm",
    "audio_only",
    "too_short",
    "too_small",
    "impossible_aspect",
    "uhd_120fps",
    "high_fps",
    "rotated",
    "long",
    "scenes",
    "still_png",
    "tiny_png",
    "wide_png",
    "alpha_png",
    "webp",
    "exif_jpeg",
    "png_named_jpg",
    "text_png",
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return asyncio.run(make_corpus(tmp_path_factory.mktemp("badmedia"), NEEDED))


def rules(found: list[Violation]) -> list[str]:
    return [v.rule for v in found]


# --- check_video / check_image --------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "orientation", "expected"),
    [
        ("good", "video", []),
        ("rotated", "video", []),
        ("too_short", "video", ["video.duration.min"]),
        ("uhd_120fps", "video", ["video.fps", "video.duration.min"]),
        ("too_small", "video", ["video.side.min"]),
        ("impossible_aspect", "video", ["video.side.min", "video.side.max"]),
        ("high_fps", "video", ["video.fps"]),
        ("long", "video", []),
        ("long", "image", ["video.duration.max"]),
        ("mkv_as_mp4", "video", ["video.container"]),
        ("webm", "video", ["video.container", "video.codec", "video.side.min"]),
        ("gif", "video", ["video.container", "video.codec", "video.side.min", "video.fps"]),
        (
            "still_png",
            "video",
            ["video.container", "video.codec", "video.fps", "video.duration.min"],
        ),
    ],
)
@pytest.mark.slow
def test_check_video_lists_every_violation(
    corpus: dict[str, Path], name: str, orientation: str, expected: list[str]
) -> None:
    found = check_video(corpus[name], orientation=orientation)
    assert rules(found) == expected
    for violation in found:
        assert violation.subject == str(corpus[name])
        line = violation.message()
        assert "\n" not in line
        assert repr(str(corpus[name])) in line
        assert "Fix: " in line


@pytest.mark.slow
def test_violation_message_has_measured_limit_and_fix(corpus: dict[str, Path]) -> None:
    (short,) = check_video(corpus["too_short"])
    assert short == Violation(
        subject=str(corpus["too_short"]),
        rule="video.duration.min",
        measured="2.00 s",
        limit=">= 3 s",
        fix="video.prepare: start/duration, or a longer clip",
    )
    assert short.message() == (
        f"{str(corpus['too_short'])!r} breaks video.duration.min: 2.00 s; the model needs"
        " >= 3 s. Fix: video.prepare: start/duration, or a longer clip"
    )
    (cap,) = check_video(corpus["long"], orientation="image")
    assert "12.00 s" in cap.measured
    assert "<= 10 s with character_orientation: image" in cap.limit
    assert "character_orientation: video" in cap.fix


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("corrupt", "cannot read media file"),
        ("truncated", "truncated"),
        ("audio_only", "no video stream"),
    ],
)
def test_check_video_unreadable_is_a_media_error(
    corpus: dict[str, Path], name: str, fragment: str
) -> None:
    with pytest.raises(MediaError) as caught:
        check_video(corpus[name])
    message = str(caught.value)
    assert fragment in message
    assert repr(str(corpus[name])) in message
    assert "Fix:" in message


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("alpha_png", []),
        ("tiny_png", ["image.side.min"]),
        ("wide_png", ["image.side.min", "image.ratio"]),
        ("exif_jpeg", ["image.side.min"]),
        ("webp", ["image.format"]),
        ("png_named_jpg", ["image.extension"]),
        ("good", ["image.format"]),
    ],
)
def test_check_image_lists_every_violation(
    corpus: dict[str, Path], name: str, expected: list[str]
) -> None:
    assert rules(check_image(corpus[name])) == expected


def test_check_image_measures_the_shown_size(corpus: dict[str, Path]) -> None:
    # EXIF orientation 6: stored 400x200, shown 200x400.
    (small,) = check_image(corpus["exif_jpeg"])
    assert small.measured == "200x400 (shorter side 200 px)"
    assert small.fix.startswith("image.prepare")


def test_cache_blobs_without_extension_are_fine(corpus: dict[str, Path], tmp_path: Path) -> None:
    blob = tmp_path / "0123abcd"
    blob.write_bytes(corpus["good"].read_bytes())
    assert check_video(blob) == []
    still = tmp_path / "4567ef"
    still.write_bytes(corpus["alpha_png"].read_bytes())
    assert check_image(still) == []


def test_rules_are_the_contract() -> None:
    assert RULES.image_max_bytes == 10_000_000
    assert RULES.video_max_bytes == 100_000_000
    assert (RULES.max_seconds("image"), RULES.max_seconds("video")) == (10.0, 30.0)
    with pytest.raises(ValueError, match="character_orientation"):
        RULES.max_seconds("portrait")


# --- scenes ---------------------------------------------------------------------------------


def test_scene_cuts_finds_hard_cuts(corpus: dict[str, Path]) -> None:
    cuts = asyncio.run(scene_cuts(corpus["scenes"]))
    assert cuts == pytest.approx([1.0, 4.4], abs=0.041)
    assert asyncio.run(scene_cuts(corpus["good"])) == []


def test_scene_threshold_is_validated(corpus: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        asyncio.run(scene_cuts(corpus["good"], threshold=1.5))


@pytest.mark.parametrize(
    ("cuts", "duration", "span"),
    [
        ([], 5.0, (0.0, 5.0)),
        ([1.0, 4.5], 6.0, (1.0, 4.5)),
        ([4.5, 1.0, 1.0], 6.0, (1.0, 4.5)),
        ([2.0], 4.0, (0.0, 2.0)),  # a tie: the earliest
        ([0.0, 7.0, 3.0], 6.0, (0.0, 3.0)),  # outside (0, duration): ignored
        ([1.0], 0.0, (0.0, 0.0)),
    ],
)
def test_longest_clean_span(cuts: list[float], duration: float, span: tuple[float, float]) -> None:
    assert longest_clean_span(cuts, duration) == span


# --- preflight and the media.check stage ----------------------------------------------------


def test_preflight(corpus: dict[str, Path]) -> None:
    ok = asyncio.run(preflight(corpus["alpha_png"], corpus["good"], "video"))
    assert ok == []
    found = asyncio.run(preflight(corpus["tiny_png"], corpus["long"], "image"))
    assert rules(found) == ["image.side.min", "video.duration.max"]
    assert asyncio.run(preflight(None, corpus["too_short"], "video"))[0].rule == (
        "video.duration.min"
    )
    assert asyncio.run(preflight(None, None, "video")) == []


def check(image: Path | None, video: Path | None, **options: Any) -> StageResult:
    params = MediaCheckParams(
        image=FileArtifact("blake3:i", image, image.suffix) if image else None,
        video=FileArtifact("blake3:v", video, video.suffix) if video else None,
        **options,
    )
    ctx = StageContext(Path("/nonexistent"), "check", "simulate", 0, "check", lambda e: None)
    result: StageResult = asyncio.run(MediaCheckStage().run(params, ctx))
    return result


def test_media_check_lists_all_violations_at_once(corpus: dict[str, Path]) -> None:
    with pytest.raises(MediaError) as caught:
        check(corpus["wide_png"], corpus["uhd_120fps"])
    lines = str(caught.value).splitlines()
    assert lines[0] == "media.check: 4 media rule violations:"
    assert [line.split(" breaks ")[1].split(":")[0] for line in lines[1:]] == [
        "image.side.min",
        "image.ratio",
        "video.fps",
        "video.duration.min",
    ]
    assert all(repr(str(corpus["wide_png"])) in line for line in lines[1:3])
    assert all(repr(str(corpus["uhd_120fps"])) in line for line in lines[3:])


def test_media_check_report(corpus: dict[str, Path]) -> None:
    report = check(corpus["alpha_png"], corpus["good"]).outputs["report"]
    assert report["image"] == {
        "format": "png",
        "width": 400,
        "height": 400,
        "ratio": 1.0,
        "mb": pytest.approx(corpus["alpha_png"].stat().st_size / 1e6, abs=0.001),
        "pix_fmt": "rgba",
        "rotation": 0,
    }
    video = report["video"]
    assert (video["codec"], video["width"], video["height"], video["fps"]) == ("h264", 640, 360, 25)
    assert video["duration"] == pytest.approx(4.0)
    assert video["has_audio"] is True
    assert video["scene_cuts"] == []
    assert video["longest_clean_span"] == [0.0, 4.0]
    assert len(report["warnings"]) == 1
    assert "transparency" in report["warnings"][0]


def test_media_check_warns_about_cuts_and_rotation(corpus: dict[str, Path]) -> None:
    report = check(None, corpus["scenes"]).outputs["report"]
    assert report["video"]["scene_cuts"] == pytest.approx([1.0, 4.4], abs=0.041)
    (warning,) = report["warnings"]
    assert "2 scene cuts at 1.00 s, 4.40 s" in warning
    assert "video.prepare with start: 1.00, duration: 3.40" in warning
    rotated = check(None, corpus["rotated"]).outputs["report"]
    assert (rotated["video"]["width"], rotated["video"]["height"]) == (360, 640)
    assert any("90° display rotation" in w for w in rotated["warnings"])


def test_media_check_needs_a_file(corpus: dict[str, Path]) -> None:
    with pytest.raises(ValidationError, match="give image, video, or both"):
        MediaCheckParams()
    with pytest.raises(ValidationError):
        MediaCheckParams(video=FileArtifact("blake3:v", corpus["good"], ".mp4"), scene_threshold=0)
