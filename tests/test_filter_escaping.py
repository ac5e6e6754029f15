"""Filter-graph escaping, proven on the real ffmpeg: what it receives is what we meant."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from motionflow.fakeapi.render import _filter_graph
from motionflow.media.ffmpeg import escape_filter_value, find_ffmpeg
from motionflow.media.fonts import find_font

HOSTILE = [
    "it's",
    "a:b",
    r"C:\dir\x",
    "100% {pts} %{n}",
    "a,b;c",
    "[in][out]",
    "k=v",
    "line1\nline2",
    "SIMULATED · café",
    "  padded  ",
    "\tends in a newline\n",
    "trailing\\",
    "\\'",
    '${x} | "q"',
    "it's 100%: a,b;c [x]=y \\ é\nz",
]
# A directory every graph must name exactly: quote, colon, comma, brackets, semicolon, spaces.
HOSTILE_DIR = "it's a: dir, [x]; y"


def _ffmpeg(*args: str) -> subprocess.CompletedProcess[bytes]:
    argv = [find_ffmpeg(), "-hide_banner", "-nostdin", "-y", *args]
    return subprocess.run(argv, capture_output=True, check=False, timeout=60)


def _ok(done: subprocess.CompletedProcess[bytes]) -> bytes:
    assert done.returncode == 0, done.stderr.decode("utf-8", "replace")[-2000:]
    return done.stdout


@pytest.fixture
def hostile_dir(tmp_path: Path) -> Path:
    folder = tmp_path / HOSTILE_DIR
    folder.mkdir()
    return folder


@pytest.mark.parametrize("value", HOSTILE, ids=repr)
def test_metadata_receives_the_exact_value(value: str, hostile_dir: Path) -> None:
    """``metadata=mode=print`` writes the value ffmpeg parsed into a file we read back."""
    printed = hostile_dir / "printed.txt"
    graph = (
        "color=c=black:s=16x16:d=0.04,"
        f"metadata=mode=add:key=k:value={escape_filter_value(value)},"
        f"metadata=mode=print:file={escape_filter_value(str(printed))}[out]"
    )
    _ok(_ffmpeg("-filter_complex", graph, "-map", "[out]", "-frames:v", "1", "-f", "null", "-"))
    # "frame:0 pts:0 pts_time:0\nk=<value>\n"
    _, body = printed.read_text("utf-8").split("\n", 1)
    assert body.removeprefix("k=").removesuffix("\n") == value


def _drawtext_frame(source: str) -> bytes:
    graph = (
        f"color=c=black:s=160x48:d=0.04,drawtext={source}:expansion=none"
        ":fontsize=12:fontcolor=white:x=2:y=2[out]"
    )
    args = ["-filter_complex", graph, "-map", "[out]", "-frames:v", "1"]
    return _ok(_ffmpeg(*args, "-f", "rawvideo", "-pix_fmt", "gray", "-"))


# drawtext drops one trailing newline of a textfile (ffmpeg 9 does), so the textfile oracle does
# not hold for those values; the metadata test above covers them.
@pytest.mark.parametrize("value", [v for v in HOSTILE if not v.endswith("\n")], ids=repr)
def test_drawtext_draws_what_textfile_draws(value: str, hostile_dir: Path) -> None:
    """``textfile=`` needs no escaping of the text, so its pixels are the oracle for ``text=``."""
    font = find_font()
    if font is None:
        pytest.skip("no TrueType font on this machine (set MOTIONFLOW_FONT)")
    fontfile = hostile_dir / "f,o;n[t]'s.ttf"
    shutil.copyfile(font, fontfile)
    textfile = hostile_dir / "text.txt"
    textfile.write_text(value, "utf-8")
    font_opt = f"fontfile={escape_filter_value(str(fontfile))}"
    oracle = _drawtext_frame(f"{font_opt}:textfile={escape_filter_value(str(textfile))}")
    assert any(oracle), "the oracle drew nothing: the check would prove nothing"
    assert _drawtext_frame(f"{font_opt}:text={escape_filter_value(value)}") == oracle


def test_leading_whitespace_moves_the_text(hostile_dir: Path) -> None:
    """The escaped leading spaces reach drawtext (ffmpeg would drop them unescaped)."""
    font = find_font()
    if font is None:
        pytest.skip("no TrueType font on this machine (set MOTIONFLOW_FONT)")
    opt = f"fontfile={escape_filter_value(font)}:text="
    padded = _drawtext_frame(opt + escape_filter_value("   x"))
    assert padded != _drawtext_frame(opt + escape_filter_value("x"))


@pytest.mark.parametrize("font", [None, "found"])
def test_simulated_video_graph_parses_hostile_text(font: str | None) -> None:
    """The simulate renderer's whole graph (commas in overlay expressions, drawtext) runs."""
    fontfile = find_font() if font else None
    if font and fontfile is None:
        pytest.skip("no TrueType font on this machine (set MOTIONFLOW_FONT)")
    text = HOSTILE[-1]
    graph = _filter_graph(
        64, 48, label=text, font=fontfile, details=f"  {text}", prompt=" ".join(HOSTILE)
    )
    _ok(
        _ffmpeg(
            *("-f", "lavfi", "-i", "color=c=red:s=32x32:d=0.1"),
            *("-f", "lavfi", "-i", "testsrc=s=64x48:r=24:d=0.1"),
            *("-filter_complex", graph, "-map", "[out]", "-frames:v", "1", "-f", "null", "-"),
        )
    )
