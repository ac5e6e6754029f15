"""Tests for ``video.compare``: labelled side-by-side and grid videos, with real ffmpeg."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import av
import pytest

from motionflow.errors import MediaError, UsageError
from motionflow.media.ffmpeg import run_ffmpeg
from motionflow.media.fonts import ENV_FONT, find_font
from motionflow.media.probe import probe
from motionflow.stages.base import FileArtifact, StageContext, StageResult
from motionflow.stages.compare import REFERENCE_LABEL, VideoCompareStage, grid_shape
from motionflow.stages.registry import get_stage

REPO_ASSETS = Path(__file__).resolve().parents[1] / "recipes" / "assets"

LAVFI = ["-f", "lavfi", "-i"]
X264 = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
TH = 120
# At a tile height of 120: wide (4:3) is 160 wide, wider (3:2) 180, tall (2:3) 80.
TW = 180


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three tiny clips of different shapes, rates and lengths; only ``wide`` has sound."""
    d = tmp_path_factory.mktemp("compare-media")
    out = {"wide": d / "wide.mp4", "wider": d / "wider.mp4", "tall": d / "tall.mp4"}

    async def make() -> None:
        await asyncio.gather(
            run_ffmpeg(
                [
                    *(*LAVFI, "testsrc=s=320x240:r=25:d=1", *LAVFI, "sine=f=440:d=1"),
                    *(*X264, "-c:a", "aac", "-t", "1", str(out["wide"])),
                ],
                what="make wide.mp4",
            ),
            run_ffmpeg(
                [*LAVFI, "testsrc2=s=240x160:r=30:d=1.5", *X264, str(out["wider"])],
                what="make wider.mp4",
            ),
            run_ffmpeg(
                [*LAVFI, "smptebars=s=160x240:r=24:d=0.5", *X264, str(out["tall"])],
                what="make tall.mp4",
            ),
        )

    asyncio.run(make())
    return out


def art(path: Path) -> FileArtifact:
    return FileArtifact(f"blake3:{path.name}", path, path.suffix)


def compare(
    workdir: Path, videos: list[Path], ctx_labels: list[str] | None = None, **params: Any
) -> StageResult:
    """Run the stage; ``ctx_labels`` are what the engine sets for ``over: variants``."""
    workdir.mkdir(parents=True, exist_ok=True)
    ctx = StageContext(
        workdir=workdir,
        stage="sheet",
        provider="simulate",
        take=0,
        label="sheet",
        emit=lambda e: None,
        labels=ctx_labels or [],
    )
    if "reference" in params:
        params["reference"] = art(params["reference"])
    stage = VideoCompareStage()
    model = stage.Params(videos=[art(v) for v in videos], tile_height=TH, **params)
    return asyncio.run(stage.run(model, ctx))


def test_contract() -> None:
    stage = get_stage("video.compare")
    assert isinstance(stage, VideoCompareStage)
    assert VideoCompareStage.outputs == {"video": "file", "layout": "value"}
    for name, field in VideoCompareStage.Params.model_fields.items():
        assert field.description, f"video.compare.{name} has no description"
    params = VideoCompareStage.Params.model_construct()
    env = stage.environment(params, "simulate")
    assert "ffmpeg" not in env  # recorded in receipts (tools), never in the key
    assert stage.tools(params)["ffmpeg"].startswith("ffmpeg version")
    font = find_font()
    assert env["font"] == (Path(font).name if font else None)  # a name, never a path


@pytest.mark.parametrize(
    ("tiles", "layout", "shape"),
    [
        (1, "auto", (1, 1)),
        (3, "auto", (3, 1)),
        (4, "auto", (2, 2)),
        (5, "auto", (3, 2)),
        (10, "auto", (4, 3)),
        (3, "grid", (2, 2)),
        (5, "row", (5, 1)),
    ],
)
def test_grid_shape(tiles: int, layout: str, shape: tuple[int, int]) -> None:
    assert grid_shape(tiles, layout) == shape


def test_row_of_three_with_variant_labels(clips: dict[str, Path], tmp_path: Path) -> None:
    labels = ["outfit=red, it's [v1]; 100% {x}: ok", "mode=pro · take 2", "c"]
    result = compare(tmp_path, [clips["wide"], clips["wider"], clips["tall"]], ctx_labels=labels)
    video = result.outputs["video"]
    assert video == tmp_path / "compare.mp4"
    assert sorted(tmp_path.iterdir()) == [video]
    info = probe(video)
    assert (info.video_codec, info.width, info.height) == ("h264", 3 * TW, TH)
    assert info.duration == pytest.approx(1.5, abs=1 / 30)  # longest: the 1.5 s clip
    assert info.fps == pytest.approx(30.0)  # the fastest input's rate
    assert not info.has_audio
    with av.open(str(video)) as container:
        assert container.streams.video[0].codec_context.pix_fmt == "yuv420p"
    assert result.outputs["layout"] == {
        "columns": 3,
        "rows": 1,
        "tile_width": TW,
        "tile_height": TH,
        "labels": labels,
    }


def test_grid_with_reference_shortest_and_its_audio(clips: dict[str, Path], tmp_path: Path) -> None:
    result = compare(
        tmp_path,
        [clips["wider"], clips["tall"], clips["wider"]],
        reference=clips["wide"],
        duration="shortest",
        audio="reference",
    )
    info = probe(result.outputs["video"])
    assert (info.width, info.height) == (2 * TW, 2 * TH)
    assert info.duration == pytest.approx(0.5, abs=1 / 30)  # shortest: the 0.5 s clip
    assert info.has_audio
    layout = result.outputs["layout"]
    assert (layout["columns"], layout["rows"]) == (2, 2)
    assert layout["labels"] == [REFERENCE_LABEL, "1", "2", "3"]


def test_single_video_and_first_audio(clips: dict[str, Path], tmp_path: Path) -> None:
    result = compare(tmp_path, [clips["wide"]], audio="first")
    info = probe(result.outputs["video"])
    assert (info.width, info.height) == (160, TH)
    assert info.duration == pytest.approx(1.0, abs=1 / 25)
    assert info.has_audio
    assert result.outputs["layout"]["labels"] == ["1"]


def test_explicit_labels_win_over_variant_labels(clips: dict[str, Path], tmp_path: Path) -> None:
    result = compare(
        tmp_path, [clips["tall"], clips["tall"]], ctx_labels=["v1", "v2"], labels=["a", "b"]
    )
    assert result.outputs["layout"]["labels"] == ["a", "b"]


@pytest.mark.parametrize(
    ("params", "labels", "match"),
    [
        ({"labels": ["only one"]}, [], r"labels give 1 caption\(s\) for 2 video\(s\)"),
        ({}, ["a", "b", "c"], r"variant names .* give 3 caption\(s\) for 2 video\(s\)"),
        ({"audio": "reference"}, [], r"audio: reference needs a reference video"),
    ],
)
def test_bad_requests_are_media_errors(
    clips: dict[str, Path], tmp_path: Path, params: dict[str, Any], labels: list[str], match: str
) -> None:
    with pytest.raises(MediaError, match=match):
        compare(tmp_path, [clips["tall"], clips["tall"]], ctx_labels=labels, **params)


def test_empty_videos_is_a_media_error(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="videos is empty"):
        compare(tmp_path, [])


def test_unreadable_video_is_named(clips: dict[str, Path], tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.mp4"
    bogus.write_text("not a video")
    with pytest.raises(MediaError, match=r"bogus\.mp4"):
        compare(tmp_path / "w", [clips["tall"], bogus])


def test_captions_change_the_picture_when_a_font_exists(
    clips: dict[str, Path], tmp_path: Path
) -> None:
    if find_font() is None:
        pytest.skip("no font on this system: captions are drawn as coloured bars")
    videos = [clips["tall"], clips["tall"]]
    one = compare(tmp_path / "one", videos, ctx_labels=["red jacket", "white hoodie"])
    two = compare(tmp_path / "two", videos, ctx_labels=["red jacket", "green scarf"])
    assert one.outputs["video"].read_bytes() != two.outputs["video"].read_bytes()


def test_without_a_font_captions_are_bars(
    clips: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_FONT, "none")
    assert (
        VideoCompareStage().environment(VideoCompareStage.Params.model_construct(), "x")["font"]
        is None
    )
    videos = [clips["tall"], clips["tall"]]
    one = compare(tmp_path / "one", videos, ctx_labels=["red jacket", "white hoodie"])
    two = compare(tmp_path / "two", videos, ctx_labels=["red jacket", "green scarf"])
    info = probe(one.outputs["video"])
    assert (info.width, info.height) == (160, TH)
    # No text is drawn, so the labels cannot change a pixel.
    assert one.outputs["video"].read_bytes() == two.outputs["video"].read_bytes()


def test_font_env_pointing_nowhere_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(ENV_FONT, str(tmp_path / "missing.ttf"))
    with pytest.raises(UsageError, match=rf"{ENV_FONT}=.*missing\.ttf.* does not exist"):
        find_font()


@pytest.mark.parametrize("font", ["system", "none"])
def test_captions_leave_the_simulated_banner_visible(
    font: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tile's caption sits at the bottom: the SIMULATED banner (top left) stays readable."""
    from motionflow.fakeapi.render import render_simulated_video

    if font == "none":
        monkeypatch.setenv(ENV_FONT, "none")
    take = tmp_path / "take.mp4"
    asyncio.run(
        render_simulated_video(
            image=REPO_ASSETS / "hero.png",
            video=REPO_ASSETS / "dance.mp4",
            dest=take,
            mode="std",
            seconds=0.5,
            keep_original_sound=False,
            label="job",
            prompt="A dancer.",
        )
    )
    result = compare(tmp_path / "sheet", [take, take], ctx_labels=["a long caption", "b"])
    with av.open(str(result.outputs["video"])) as container:
        frame = next(container.decode(video=0)).to_ndarray(format="rgb24")
    # tile 1 is 214x120 (1280x720 scaled): the banner's pink (0xE0115F) is its top-left corner,
    # not under a caption's black box or a coloured bar
    corner = frame[2:12, 2:40].astype(int)
    pink = (corner[..., 0] > 150) & (corner[..., 1] < 90) & (corner[..., 2] > 50)
    assert pink.mean() > 0.3, pink.mean()
