"""Hostile recipe inputs: slow, short, empty or HTML downloads, bad URLs, devices, odd formats."""

from __future__ import annotations

import asyncio
import http.server
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import av
import pytest
from conftest import ASSETS, Project

from motionflow.cache.store import Cache
from motionflow.errors import InputError, MediaError
from motionflow.fetch import fetch_input
from motionflow.media.ffmpeg import find_ffmpeg
from motionflow.media.probe import probe
from motionflow.media.rules import stream_details
from motionflow.recipe.schema import RemoteInput
from motionflow.stages.base import FileArtifact, StageContext, StageResult
from motionflow.stages.image_prepare import ImagePrepareParams, ImagePrepareStage
from motionflow.stages.video_prepare import VideoPrepareParams, VideoPrepareStage

DANCE = (ASSETS / "dance.mp4").read_bytes()
HTML = b"<!DOCTYPE html>\n<html><body>Please log in</body></html>"


class _Hostile:
    """A loopback server whose paths misbehave in one way each."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.stop = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def reply(self, body: bytes, length: int | None = None, ctype: str = "") -> None:
                self.send_response(200)
                if ctype:
                    self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body) if length is None else length))
                self.end_headers()
                self.wfile.write(body)
                self.wfile.flush()

            def do_GET(self) -> None:
                server.requests.append(self.path)
                if self.path == "/trickle.mp4":  # one byte a second, for ever
                    self.send_response(200)
                    self.send_header("Content-Length", str(10**6))
                    self.end_headers()
                    while not server.stop.is_set():
                        try:
                            self.wfile.write(b"x")
                            self.wfile.flush()
                        except OSError:
                            return
                        server.stop.wait(1)
                elif self.path == "/short.mp4":  # announces the whole file, sends 1000 bytes
                    self.reply(DANCE[:1000], length=len(DANCE))
                    self.close_connection = True
                elif self.path == "/page.mp4":
                    self.reply(HTML, ctype="text/html; charset=utf-8")
                elif self.path == "/untyped-page.mp4":  # HTML sent as a video
                    self.reply(HTML + b" " * 1000, ctype="video/mp4")
                elif self.path == "/empty.mp4":
                    self.reply(b"")
                elif self.path == "/to-data.mp4":
                    self.send_response(302)
                    self.send_header("Location", "data:text/plain,hello")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif self.path == "/dance.mp4":
                    self.reply(DANCE, ctype="video/mp4")
                else:
                    self.send_error(404)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def hostile() -> Iterator[_Hostile]:
    srv = _Hostile()
    yield srv
    srv.close()


RECIPE = """\
version: 1
name: hostile
inputs:
  v: {V}
stages:
  clip: {uses: video.prepare, with: {src: "${inputs.v}", duration: 1}}
outputs: [clip]
"""


def _blobs(cache: Path) -> list[Path]:
    return [p for p in (cache / "blobs").rglob("*") if p.is_file()] if cache.exists() else []


def _ffmpeg(*args: str) -> None:
    subprocess.run([find_ffmpeg(), "-v", "error", "-y", *args], check=True, timeout=120)


def _run_stage(stage: object, params: object, workdir: Path) -> tuple[StageResult, list[object]]:
    workdir.mkdir(parents=True, exist_ok=True)
    events: list[object] = []
    ctx = StageContext(workdir, "prep", "simulate", 0, "prep", events.append)
    result: StageResult = asyncio.run(stage.run(params, ctx))  # type: ignore[attr-defined]
    return result, events


# --- 1. an overall deadline on downloads ----------------------------------------------------


@pytest.mark.slow
def test_a_trickling_download_is_cut_at_the_deadline(hostile: _Hostile, tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    spec = RemoteInput(url=f"{hostile.url}/trickle.mp4")

    async def fetch() -> None:
        # wait_for is only a hang guard: the deadline under test is 2 s
        await asyncio.wait_for(fetch_input("v", spec, cache, deadline=2), 120)

    with pytest.raises(InputError) as caught:
        asyncio.run(fetch())
    message = str(caught.value)
    assert "input 'v'" in message and "within 2 s" in message and "Nothing was stored" in message
    assert cache.get("url:" + spec.url) is None
    assert _blobs(tmp_path / "cache") == []


# --- 2. refused bodies are never cached -----------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/short.mp4", "1000 bytes"),
        ("/page.mp4", "web page (HTML)"),
        ("/untyped-page.mp4", "web page (HTML)"),
        ("/empty.mp4", "empty body"),
    ],
)
@pytest.mark.slow
def test_a_refused_download_is_not_cached_and_names_the_input(
    project: Project, hostile: _Hostile, path: str, expected: str
) -> None:
    project.write("r.yaml", RECIPE.replace("{V}", f'{{url: "{hostile.url}{path}"}}'))
    for attempt in (1, 2):  # the second run asks the server again: nothing was remembered
        proc = project.cli("run", "r.yaml")
        assert proc.returncode == 2, proc.stderr
        assert "input 'v'" in proc.stderr and expected in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr and "blobs" not in proc.stderr
        assert hostile.requests == [path] * attempt
    assert _blobs(project.cache) == []
    assert not project.out("hostile").exists()


# --- 3. bad URLs and redirects --------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("{base}/dance.mp4\\r\\nX-Injected: 1", "control or space character '\\r'"),
        ("{base}/dan\\nce.mp4", "control or space character '\\n'"),
        ("{base}/to-data.mp4", "redirected to a URL that cannot be fetched"),
    ],
)
def test_bad_urls_and_redirects_are_input_errors(
    project: Project, hostile: _Hostile, url: str, expected: str
) -> None:
    project.write("r.yaml", RECIPE.replace("{V}", f'{{url: "{url.format(base=hostile.url)}"}}'))
    proc = project.cli("run", "r.yaml")
    assert proc.returncode == 2, proc.stderr
    assert "input 'v'" in proc.stderr or "inputs.v.url" in proc.stderr, proc.stderr
    assert expected in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    assert _blobs(project.cache) == []
    assert hostile.requests in ([], ["/to-data.mp4"])  # the CR/LF ones never went out


# --- 4. devices and FIFOs as local inputs ---------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "link-to-dev-zero"])
def test_a_device_or_fifo_input_is_not_a_regular_file(project: Project, kind: str) -> None:
    if kind == "fifo":
        os.mkfifo(project.root / "assets" / "pipe.mp4")
        src = "assets/pipe.mp4"
    elif kind == "dev-zero":
        src = "/dev/zero"
    else:
        (project.root / "assets" / "zero.mp4").symlink_to("/dev/zero")
        src = "assets/zero.mp4"
    project.write("r.yaml", RECIPE.replace("{V}", src))
    proc = project.cli("validate", "r.yaml", "--allow-outside-project")  # hang guard: timeout
    assert proc.returncode == 2, proc.stderr
    assert "input 'v'" in proc.stderr and "is not a regular file" in proc.stderr, proc.stderr
    assert "does not exist" not in proc.stderr


# --- 5. SVG ---------------------------------------------------------------------------------

SVG = '<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"/>'


def test_an_svg_input_is_refused_naming_the_input(project: Project) -> None:
    project.write("assets/hero.svg", SVG)
    project.write(
        "r.yaml",
        """\
        version: 1
        name: svg
        inputs: {hero: assets/hero.svg}
        stages:
          still: {uses: image.prepare, with: {src: "${inputs.hero}"}}
          check: {uses: media.check, with: {image: "${inputs.hero}"}}
        outputs: [still]
        """,
    )
    for command in ("validate", "run"):
        proc = project.cli(command, "r.yaml")
        assert proc.returncode == 2, proc.stderr
        assert "src (input 'hero')" in proc.stderr and "image (input 'hero')" in proc.stderr
        assert "SVG is not supported" in proc.stderr and "convert it to PNG" in proc.stderr
        assert "AttributeError" not in proc.stderr and "Traceback" not in proc.stderr
    assert _blobs(project.cache) == []


def test_probe_of_an_svg_is_a_media_error(tmp_path: Path) -> None:
    path = tmp_path / "drawing.png"  # a misleading name: the bytes decide
    path.write_text(SVG, encoding="utf-8")
    with pytest.raises(MediaError, match=r"is an SVG drawing\. SVG is not supported"):
        probe(path)


# --- 6. animated WebP -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def animated_webp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("webp") / "anim.webp"
    _ffmpeg("-f", "lavfi", "-i", "testsrc=s=64x64:r=5:d=1", "-c:v", "libwebp_anim", str(path))
    return path


def test_image_prepare_takes_the_first_frame_of_an_animated_webp(
    animated_webp: Path, tmp_path: Path
) -> None:
    params = ImagePrepareParams(src=FileArtifact("blake3:anim", animated_webp, ".webp"))
    result, _ = _run_stage(ImagePrepareStage(), params, tmp_path / "work")
    assert "took the first frame of an animated WebP" in result.outputs["info"]["operations"]
    assert probe(result.outputs["image"]).video_codec == "png"


def test_an_animated_webp_elsewhere_is_a_clear_media_error(
    animated_webp: Path, tmp_path: Path
) -> None:
    with pytest.raises(MediaError, match=r"is an animated WebP.*image\.prepare takes its first"):
        probe(animated_webp)
    params = VideoPrepareParams(src=FileArtifact("blake3:anim", animated_webp, ".webp"))
    with pytest.raises(MediaError, match="animated WebP"):
        _run_stage(VideoPrepareStage(), params, tmp_path / "work")


# --- 7. interlaced reference video ----------------------------------------------------------


@pytest.fixture(scope="module")
def interlaced(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("interlaced") / "tff.mp4"
    _ffmpeg(
        *("-f", "lavfi", "-i", "testsrc=s=64x64:r=50:d=3.2"),
        *("-vf", "tinterlace=interleave_top,fieldorder=tff", "-r", "25"),
        *("-c:v", "libx264", "-flags", "+ilme+ildct", "-pix_fmt", "yuv420p", str(path)),
    )
    return path


def _field_order(path: Path) -> int:
    with av.open(str(path)) as container:
        return int(container.streams.video[0].codec_context.field_order)


def test_an_interlaced_clip_is_deinterlaced_with_a_warning(
    interlaced: Path, tmp_path: Path
) -> None:
    assert stream_details(interlaced).interlaced and _field_order(interlaced) >= 2
    params = VideoPrepareParams(
        src=FileArtifact("blake3:tff", interlaced, ".mp4"), allow_upscale=True
    )
    result, events = _run_stage(VideoPrepareStage(), params, tmp_path / "work")
    out = result.outputs["video"]
    assert _field_order(out) in (0, 1)  # unknown or progressive
    assert not stream_details(out).interlaced
    assert result.outputs["info"]["path_taken"] == "encode"
    shown = [getattr(e, "message", "") for e in events]
    assert any("is interlaced" in m and "deinterlaced" in m for m in shown), events


def test_the_interlace_warning_reaches_the_user(project: Project, interlaced: Path) -> None:
    (project.root / "assets" / "tff.mp4").write_bytes(interlaced.read_bytes())
    project.write(
        "r.yaml",
        """\
        version: 1
        name: tff
        inputs: {v: assets/tff.mp4}
        stages:
          clip: {uses: video.prepare, with: {src: "${inputs.v}", allow_upscale: true}}
        outputs: [clip]
        """,
    )
    proc = project.cli("run", "r.yaml")
    assert proc.returncode == 0, proc.stderr
    assert "is interlaced" in proc.stdout + proc.stderr


def test_a_progressive_clip_is_not_deinterlaced() -> None:
    assert not stream_details(ASSETS / "dance.mp4").interlaced


# --- 8. media.check on a remote input -------------------------------------------------------


@pytest.mark.slow
def test_media_check_of_a_remote_input(project: Project, hostile: _Hostile) -> None:
    project.write(
        "r.yaml",
        f"""\
        version: 1
        name: remote-check
        inputs:
          v: {{url: "{hostile.url}/dance.mp4"}}
        stages:
          check: {{uses: media.check, with: {{video: "${{inputs.v}}"}}}}
        outputs: [check]
        """,
    )
    assert project.cli("validate", "r.yaml").returncode == 0
    assert project.cli("plan", "r.yaml").returncode == 0
    result = project.run_json("r.yaml")
    assert result["_exit"] == 0, result["_stderr"]
    assert result["executed"] == 1 and hostile.requests == ["/dance.mp4"]
