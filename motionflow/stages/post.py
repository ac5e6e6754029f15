"""Post-processing stages: transcode, thumbnail, GIF, concatenation and audio tracks."""

from __future__ import annotations

import asyncio
import math
from fractions import Fraction
from typing import ClassVar

from pydantic import BaseModel

from motionflow.errors import MediaError
from motionflow.media.encoding import even, seconds
from motionflow.media.ffmpeg import ffmpeg_path, run_ffmpeg
from motionflow.media.probe import MediaInfo, probe
from motionflow.media.rules import display_size
from motionflow.stages.base import FileArtifact, OutputKind, StageContext, StageResult
from motionflow.stages.media_base import MediaStage
from motionflow.stages.post_params import (
    X264_PRESETS,
    VideoAudioParams,
    VideoConcatParams,
    VideoGifParams,
    VideoThumbnailParams,
    VideoTranscodeParams,
)

__all__ = [
    "X264_PRESETS",
    "VideoAudioParams",
    "VideoAudioStage",
    "VideoConcatParams",
    "VideoConcatStage",
    "VideoGifParams",
    "VideoGifStage",
    "VideoThumbnailParams",
    "VideoThumbnailStage",
    "VideoTranscodeParams",
    "VideoTranscodeStage",
]

# A new file's bytes depend on the input's pixels, not on its title or encoder tags.
_CLEAN = ("-map_metadata", "-1", "-fflags", "+bitexact")
_FASTSTART = ("-movflags", "+faststart")
_H264 = ("-c:v", "libx264", "-preset", "medium", "-crf", "20", "-pix_fmt", "yuv420p")
_AAC = ("-c:a", "aac", "-b:a", "160k")
# VP9 speed per x264 preset: (deadline, cpu-used).
_VP9_SPEED = {
    "ultrafast": ("realtime", 8),
    "superfast": ("realtime", 7),
    "veryfast": ("realtime", 6),
    "faster": ("good", 5),
    "fast": ("good", 4),
    "medium": ("good", 3),
    "slow": ("good", 2),
    "slower": ("good", 1),
    "veryslow": ("good", 0),
    "placebo": ("best", 0),
}
_COPY_CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
_AUDIO_RATE = 48000


async def _probe_video(artifact: FileArtifact, *, kind: str, param: str) -> MediaInfo:
    """Probe a file that must be a video (not a still, not audio only)."""
    info = await asyncio.to_thread(probe, artifact.path)
    path = str(artifact.path)
    if not info.has_video:
        msg = (
            f"{kind}: {param} {path!r} has no video stream (it is audio only). "
            "Fix: pass a video file."
        )
        raise MediaError(msg)
    if info.duration <= 0:
        msg = (
            f"{kind}: {param} {path!r} is a still image or has no duration. Fix: pass a video file."
        )
        raise MediaError(msg)
    return info


def _rate(fps: float) -> str:
    """A frame rate as an exact ffmpeg rational: 23.976... becomes ``24000/1001``."""
    return str(Fraction(fps).limit_denominator(1001))


# --- video.transcode ------------------------------------------------------------------------


class VideoTranscodeStage(MediaStage):
    """Re-encode a video with another codec, quality, size or frame rate."""

    kind: ClassVar[str] = "video.transcode"
    # 2: ffmpeg's version left the key (recorded in `tools` instead): re-runs once, free
    version: ClassVar[str] = "2"
    Params: ClassVar[type[BaseModel]] = VideoTranscodeParams
    outputs: ClassVar[dict[str, OutputKind]] = {"video": "file"}

    async def run(self, params: BaseModel, ctx: StageContext) -> StageResult:
        """Write ``video.mp4`` (h264, h265) or ``video.webm`` (vp9) into the workdir."""
        assert isinstance(params, VideoTranscodeParams)
        info = await _probe_video(params.src, kind=self.kind, param="src")
        with_audio = params.audio and info.has_audio
        filters = []
        if params.scale is None:
            filters.append("crop=trunc(iw/2)*2:trunc(ih/2)*2")
        else:
            sides = params.scale.split(":")
            width, height = ("-2" if side.startswith("-") else side for side in sides)
            filters.append(f"scale={width}:{height}")
        if params.fps is not None:
            filters.append(f"fps={_rate(params.fps)}")
        filters.append("format=yuv420p")

        crf = str(params.crf)
        if params.codec == "vp9":
            deadline, cpu_used = _VP9_SPEED[params.preset]
            video = ["-c:v", "libvpx-vp9", "-crf", crf, "-b:v", "0", "-row-mt", "1"]
            video += ["-deadline", deadline, "-cpu-used", str(cpu_used)]
            audio = ["-c:a", "libopus", "-b:a", "128k"]
            dest, container = ctx.workdir / "video.webm", ["-f", "webm"]
        else:
            encoder = "libx264" if params.codec == "h264" else "libx265"
            video = ["-c:v", encoder, "-preset", params.preset, "-crf", crf]
            if params.codec == "h265":
                # hvc1 lets Apple players open it; x265 is chatty on stderr otherwise.
                video += ["-tag:v", "hvc1", "-x265-params", "log-level=error"]
            audio = list(_AAC)
            dest, container = ctx.workdir / "video.mp4", [*_FASTSTART, "-f", "mp4"]
        args = [
            *("-i", ffmpeg_path(params.src.path), "-map", "0:v:0"),
            *(["-map", "0:a:0", *audio] if with_audio else ["-an"]),
            *("-vf", ",".join(filters), *video, "-sn", "-dn"),
            *_CLEAN,
            *container,
            ffmpeg_path(dest),
        ]
        await run_ffmpeg(args, what=f"transcode {str(params.src.path)!r} to {params.codec}")
        return StageResult({"video": dest})


# --- video.thumbnail ------------------------------------------------------------------------


class VideoThumbnailStage(MediaStage):
    """Save one frame of a video as an image."""

    kind: ClassVar[str] = "video.thumbnail"
    # 2: ffmpeg's version left the key (recorded in `tools` instead): re-runs once, free
    version: ClassVar[str] = "2"
    Params: ClassVar[type[BaseModel]] = VideoThumbnailParams
    outputs: ClassVar[dict[str, OutputKind]] = {"image": "file"}

    async def run(self, params: BaseModel, ctx: StageContext) -> StageResult:
        """Write ``thumbnail.jpg`` or ``thumbnail.png`` into the workdir."""
        assert isinstance(params, VideoThumbnailParams)
        if not (math.isfinite(params.at) and params.at >= 0):
            msg = (
                f"{self.kind}: at is {params.at!r} seconds; a frame time must be 0 or more"
                " (seconds from the start of the video)."
            )
            raise MediaError(msg)
        info = await _probe_video(params.src, kind=self.kind, param="src")
        at = min(params.at, info.duration)
        # Decode a short window ending just after ``at`` and keep its last frame (-update 1):
        # the frame on screen at ``at``, found even when the picture ends before the sound.
        start = max(at - 2.0, 0.0)
        filters = [f"scale={params.width}:-1"] if params.width is not None else []
        codec = ["-c:v", "png"] if params.format == "png" else ["-c:v", "mjpeg", "-q:v", "2"]
        dest = ctx.workdir / ("thumbnail.png" if params.format == "png" else "thumbnail.jpg")
        args = [
            *("-ss", seconds(start), "-t", seconds(at - start + 0.001)),
            *("-i", ffmpeg_path(params.src.path), "-map", "0:v:0", "-an", "-sn", "-dn"),
            *(("-vf", ",".join(filters)) if filters else ()),
            *codec,
            *_CLEAN,
            *("-f", "image2", "-update", "1", ffmpeg_path(dest)),
        ]
        await run_ffmpeg(args, what=f"take a thumbnail of {str(params.src.path)!r} at {at:g} s")
        return StageResult({"image": dest})


# --- video.gif ------------------------------------------------------------------------------


class VideoGifStage(MediaStage):
    """Make a looping GIF with a palette computed from the clip itself."""

    kind: ClassVar[str] = "video.gif"
    # 2: ffmpeg's version left the key (recorded in `tools` instead): re-runs once, free
    version: ClassVar[str] = "2"
    Params: ClassVar[type[BaseModel]] = VideoGifParams
    outputs: ClassVar[dict[str, OutputKind]] = {"gif": "file"}

    async def run(self, params: BaseModel, ctx: StageContext) -> StageResult:
        """Write ``preview.gif`` (loops forever) into the workdir."""
        assert isinstance(params, VideoGifParams)
        info = await _probe_video(params.src, kind=self.kind, param="src")
        if params.start >= info.duration:
            msg = (
                f"{self.kind}: start {params.start:g} s is past the end of "
                f"{str(params.src.path)!r} ({info.duration:.2f} s long). Fix: use a start"
                f" below {info.duration:.2f}."
            )
            raise MediaError(msg)
        # One pass: the palette is made from the very frames it is applied to.
        graph = (
            f"[0:v]fps={_rate(params.fps)},scale={params.width}:-2:flags=lanczos,split[a][b];"
            "[a]palettegen=stats_mode=diff[p];"
            "[b][p]paletteuse=dither=bayer:bayer_scale=5:diff_mode=rectangle[out]"
        )
        dest = ctx.workdir / "preview.gif"
        args = [
            *("-ss", seconds(params.start), "-t", seconds(params.duration)),
            *("-i", ffmpeg_path(params.src.path)),
            *("-filter_complex", graph, "-map", "[out]", "-an", "-sn", "-dn"),
            *("-loop", "0", *_CLEAN, "-f", "gif", ffmpeg_path(dest)),
        ]
        await run_ffmpeg(args, what=f"make a GIF of {str(params.src.path)!r}")
        return StageResult({"gif": dest})


# --- video.concat ---------------------------------------------------------------------------


class VideoConcatStage(MediaStage):
    """Play videos one after the other, normalised to one size and frame rate (H.264/AAC)."""

    kind: ClassVar[str] = "video.concat"
    # 2: ffmpeg's version left the key (recorded in `tools` instead): re-runs once, free
    version: ClassVar[str] = "2"
    Params: ClassVar[type[BaseModel]] = VideoConcatParams
    outputs: ClassVar[dict[str, OutputKind]] = {"video": "file"}

    async def run(self, params: BaseModel, ctx: StageContext) -> StageResult:
        """Write ``video.mp4`` into the workdir."""
        assert isinstance(params, VideoConcatParams)
        if len(params.videos) < 2:
            msg = (
                f"{self.kind}: videos has {len(params.videos)} item(s); concatenation needs at"
                " least 2. Fix: list two or more videos, or use video.transcode for one."
            )
            raise MediaError(msg)
        infos = await asyncio.gather(
            *(
                _probe_video(video, kind=self.kind, param=f"videos[{i}]")
                for i, video in enumerate(params.videos)
            )
        )
        first_w, first_h = display_size(infos[0])
        width = params.width or even(first_w)
        height = params.height or even(first_h)
        fps = _rate(params.fps or infos[0].fps or 25.0)
        with_audio = params.audio and any(info.has_audio for info in infos)

        chains, pads = [], []
        for i, info in enumerate(infos):
            # Every segment lasts exactly its clip's length in both streams, so sound and
            # picture stay in step across the joins.
            length = seconds(info.duration)
            chains.append(
                f"[{i}:v]setpts=PTS-STARTPTS,scale=iw*sar:ih,setsar=1,"
                f"scale={width}:{height}:force_original_aspect_ratio=decrease,"
                f"pad={width}:{height}:(ow-iw)/2:(oh-ih)/2:color=black,setsar=1,fps={fps},"
                f"tpad=stop=-1:stop_mode=clone,trim=duration={length},setpts=PTS-STARTPTS,"
                f"format=yuv420p[v{i}]"
            )
            pads.append(f"[v{i}]")
            if with_audio:
                source = (
                    f"[{i}:a:0]asetpts=PTS-STARTPTS,aresample={_AUDIO_RATE},"
                    "aformat=sample_fmts=fltp:channel_layouts=stereo,apad"
                    if info.has_audio
                    else f"anullsrc=r={_AUDIO_RATE}:cl=stereo"
                )
                chains.append(f"{source},atrim=duration={length},asetpts=PTS-STARTPTS[a{i}]")
                pads.append(f"[a{i}]")
        n, a = len(infos), int(with_audio)
        chains.append(f"{''.join(pads)}concat=n={n}:v=1:a={a}[vout]" + ("[aout]" if a else ""))

        dest = ctx.workdir / "video.mp4"
        args = [
            *(arg for video in params.videos for arg in ("-i", ffmpeg_path(video.path))),
            *("-filter_complex", ";".join(chains), "-map", "[vout]"),
            *(["-map", "[aout]", *_AAC] if with_audio else ["-an"]),
            *_H264,
            *_CLEAN,
            *_FASTSTART,
            *("-f", "mp4", ffmpeg_path(dest)),
        ]
        await run_ffmpeg(args, what=f"concatenate {n} videos")
        return StageResult({"video": dest})


# --- video.audio ----------------------------------------------------------------------------


class VideoAudioStage(MediaStage):
    """Keep, replace or strip a video's sound, copying the picture without re-encoding it."""

    kind: ClassVar[str] = "video.audio"
    # 2: ffmpeg's version left the key (recorded in `tools` instead): re-runs once, free
    version: ClassVar[str] = "2"
    Params: ClassVar[type[BaseModel]] = VideoAudioParams
    outputs: ClassVar[dict[str, OutputKind]] = {"video": "file"}

    async def run(self, params: BaseModel, ctx: StageContext) -> StageResult:
        """Write ``video`` plus the source's extension (``.mp4``, ``.mov``, ...) to the workdir."""
        assert isinstance(params, VideoAudioParams)
        if params.mode == "replace" and params.audio is None:
            msg = (
                f"{self.kind}: mode replace needs audio: ${{...}}, a reference to the new sound"
                " (e.g. audio: ${inputs.music}). Fix: add it, or use mode: keep or strip."
            )
            raise MediaError(msg)
        await _probe_video(params.src, kind=self.kind, param="src")
        suffix = (params.src.ext or params.src.path.suffix).lower()
        if suffix == ".webm":
            container, audio_codec = "webm", ["-c:a", "libopus", "-b:a", "128k"]
        else:
            suffix = suffix if suffix in _COPY_CONTAINERS else ".mp4"
            container, audio_codec = _COPY_CONTAINERS[suffix], list(_AAC)
        dest = ctx.workdir / f"video{suffix}"

        inputs = ["-i", ffmpeg_path(params.src.path)]
        if params.mode == "keep":
            streams = ["-map", "0:v:0", "-map", "0:a?", "-c", "copy"]
        elif params.mode == "strip":
            streams = ["-map", "0:v:0", "-c", "copy", "-an"]
        else:
            assert params.audio is not None
            sound = await asyncio.to_thread(probe, params.audio.path)
            if not sound.has_audio:
                msg = (
                    f"{self.kind}: audio {str(params.audio.path)!r} has no audio track. Fix:"
                    " pass an audio file, or a video with sound."
                )
                raise MediaError(msg)
            inputs += ["-i", ffmpeg_path(params.audio.path)]
            streams = ["-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", *audio_codec]
            streams += ["-shortest"] if params.shortest else []
        args = [
            *inputs,
            *streams,
            "-sn",
            "-dn",
            *(_FASTSTART if container in ("mp4", "mov") else ()),
            *("-f", container, ffmpeg_path(dest)),
        ]
        await run_ffmpeg(args, what=f"{params.mode} the sound of {str(params.src.path)!r}")
        return StageResult({"video": dest})
