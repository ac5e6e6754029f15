"""Decode reference media whole, once per content digest, to refuse truncated or corrupt files.

:func:`~motionflow.media.probe.probe` reads the container header and one frame, so a clip cut
in half by an interrupted copy, or with damaged bytes in its media data, passes it; the service
would then fetch it, fail or produce garbage, and charge anyway. Before a paid job, every video
frame and audio packet of the reference clip (and the reference image) is decoded here with
PyAV, and the file is refused when:

- the demuxer stops with an error before the end;
- any packet fails to decode. Decoders hide damage by default (they conceal a broken slice
  from its neighbours), so they run with ``err_detect=crccheck+explode``, which makes a damaged
  packet an error instead of a quietly repaired frame;
- fewer frames decode than the container declares (video), or the decoded audio is shorter
  than declared, by more than a small tolerance (AAC priming, an edit list). A file cut short
  keeps its header (``+faststart`` puts it first), so this is how truncation shows.

Damage that still decodes to a valid bitstream (a flipped bit in a residual coefficient) cannot
be seen without a checksum, which H.264 and JPEG lack; such a file plays, with a glitch, and
the service can use it. PNG chunks carry CRCs, so a damaged PNG is always caught.

Decoding a 10 s 1080p clip takes about a second, so verdicts are memoised by content digest:
in process (a sweep of 200 variants on one clip decodes it once), and, when a ``memo`` (the
cache's key-value table) is given, across runs. Only good verdicts are stored there: a broken
file is refused anyway, and deciding again costs one decode of a file the user must replace.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

__all__ = [
    "CHECK_VERSION",
    "DecodeCheck",
    "DecodeReport",
    "StreamReport",
    "check_decodes",
    "decode_report",
    "memo_name",
]

CHECK_VERSION = 1
"""Bump when the verdict rules tighten: remembered verdicts are then decoded again (cheap)."""

Kind = Literal["image", "video"]

# crccheck: verify embedded checksums (PNG chunks, AAC/MP3 CRCs); explode: a damaged packet is
# an error rather than a concealed frame.
_DECODER_OPTIONS = {"err_detect": "crccheck+explode"}
_ATTACHED_PIC = 1024  # AV_DISPOSITION_ATTACHED_PIC: cover art, not a video stream
# How far short of the declared length a healthy file can decode: a few frames (AAC priming,
# an edit list trimming a GOP's head), or a small fraction.
_SHORT_FRAMES = 2
_SHORT_FRACTION = 0.02
_SHORT_SECONDS = 0.1


class _Memo(Protocol):
    def get(self, name: str) -> Any: ...

    def set(self, name: str, value: Any) -> None: ...


@dataclass(frozen=True)
class StreamReport:
    """What decoding one stream found.

    Attributes:
        kind: ``video`` or ``audio``.
        packets: packets read from the container.
        errors: packets the decoder refused.
        frames: frames decoded.
        declared_frames: frames the container declares, 0 when it does not say.
        seconds: where the decoded data ends (end of the last frame), in seconds.
        declared_seconds: the stream's length as declared, 0.0 when unknown.
        fps: the stream's average frame rate (video), 0.0 when unknown.
    """

    kind: str
    packets: int
    errors: int
    frames: int
    declared_frames: int
    seconds: float
    declared_seconds: float
    fps: float = 0.0

    def problem(self, *, image: bool) -> str | None:
        """What is wrong with this stream, or None when it decoded whole."""
        if image:
            return "its picture does not decode" if self.errors or not self.frames else None
        found: list[str] = []
        if self.errors:
            verb = "fails" if self.errors == 1 else "fail"
            found.append(f"{self.errors} of {self.packets} {self.kind} packets {verb} to decode")
        if self.frames == 0:
            found.append(f"no {self.kind} frame decodes")
        elif self._short():
            upto = (
                f"up to {self.seconds:.2f} s of {self.declared_seconds:.2f} s"
                if self.declared_seconds
                else "short of its declared length"
            )
            if self.kind == "video" and self.declared_frames:
                found.append(
                    f"only {self.frames} of the {self.declared_frames} video frames it declares "
                    f"decode ({upto})"
                )
            else:
                found.append(f"its {self.kind} decodes only {upto}")
        return "; ".join(found) or None

    def _short(self) -> bool:
        if self.kind == "video":
            declared = self.declared_frames or round(self.declared_seconds * self.fps)
            slack = max(_SHORT_FRAMES, _SHORT_FRACTION * declared)
            return declared > 0 and self.frames < declared - slack
        slack_s = max(_SHORT_SECONDS, _SHORT_FRACTION * self.declared_seconds)
        return self.declared_seconds > 0 and self.seconds < self.declared_seconds - slack_s


@dataclass(frozen=True)
class DecodeReport:
    """The result of decoding a whole file.

    Attributes:
        streams: one report per video and audio stream (cover art left out).
        image: the file is a still image (one frame expected, no length).
        broken: why the container could not be read to its end, or None.
    """

    streams: tuple[StreamReport, ...]
    image: bool
    broken: str | None = None

    @property
    def problem(self) -> str | None:
        """What is wrong with the file, in words, or None when every stream decoded whole."""
        found = [self.broken] if self.broken else []
        for stream in self.streams:
            what = stream.problem(image=self.image)
            if what:
                found.append(what)
        if not self.streams and not self.broken:
            found.append("it has no video or audio stream")
        return "; ".join(found) or None


def decode_report(path: Path) -> DecodeReport:
    """Decode every video frame and audio packet of ``path`` and count what went wrong.

    Never raises for damaged media: an unreadable file is a report whose ``broken`` says why.
    """
    import av

    counts: dict[int, _Tally] = {}
    streams: list[Any] = []
    broken: str | None = None
    image = False
    try:
        with av.open(str(path), mode="r") as container:
            fmt = str(container.format.name)
            image = fmt == "image2" or fmt.endswith("_pipe")
            streams = [
                s
                for s in container.streams
                if s.type in ("video", "audio") and not int(s.disposition) & _ATTACHED_PIC
            ]
            for stream in streams:
                stream.codec_context.options = dict(_DECODER_OPTIONS)
                counts[stream.index] = _Tally()
            container_seconds = float(container.duration) / 1_000_000 if container.duration else 0.0
            try:
                # demux() with no stream would read every stream, even ones not counted
                for packet in container.demux(*streams) if streams else ():
                    tally = counts[packet.stream.index]
                    tally.packets += 1 if packet.size else 0  # the last, empty one flushes
                    try:
                        for frame in packet.decode():
                            tally.frames += 1
                            tally.seconds = max(tally.seconds, _frame_end(frame))
                    except av.error.FFmpegError:
                        tally.errors += 1
            except (av.error.FFmpegError, OSError, EOFError) as exc:
                broken = f"the container cannot be read to its end ({_reason(exc)})"
            reports = tuple(_stream_report(s, counts[s.index], container_seconds) for s in streams)
    except (av.error.FFmpegError, OSError, ValueError, EOFError, RuntimeError) as exc:
        return DecodeReport((), image, f"it cannot be opened as media ({_reason(exc)})")
    return DecodeReport(reports, image, broken)


def _reason(exc: BaseException) -> str:
    return str(getattr(exc, "strerror", None) or exc or type(exc).__name__)


def _frame_end(frame: Any) -> float:
    if frame.pts is None or frame.time_base is None:
        return 0.0
    start = float(frame.pts * frame.time_base)
    samples, rate = getattr(frame, "samples", 0), getattr(frame, "sample_rate", 0)
    return start + (samples / rate if samples and rate else 0.0)


@dataclass
class _Tally:
    packets: int = 0
    errors: int = 0
    frames: int = 0
    seconds: float = 0.0


def _stream_report(stream: Any, tally: _Tally, container_seconds: float) -> StreamReport:
    declared_seconds = (
        float(stream.duration * stream.time_base)
        if stream.duration is not None and stream.time_base is not None
        else container_seconds
    )
    fps = 0.0
    if stream.type == "video":
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else 0.0
    return StreamReport(
        kind=str(stream.type),
        packets=tally.packets,
        errors=tally.errors,
        frames=tally.frames,
        declared_frames=int(stream.frames or 0),
        seconds=tally.seconds,
        declared_seconds=declared_seconds,
        fps=fps,
    )


def memo_name(digest: str) -> str:
    """The name a good verdict for ``digest`` is remembered under in the cache's memo."""
    return f"decoded:{CHECK_VERSION}:{digest}"


def _message(path: Path, kind: Kind, what: str) -> str:
    if kind == "image":
        fix = (
            "re-export or re-download the image, or pass it through image.prepare (which "
            "writes a fresh PNG)"
        )
    else:
        fix = (
            "re-export or re-download the clip, or pass it through video.prepare (which "
            "re-encodes it); if video.prepare made this file, run it again from an intact source"
        )
    return (
        f"{str(path)!r} is truncated or corrupt: {what}. The service would fetch it and charge "
        f"for a job it cannot make. Fix: {fix}"
    )


class DecodeCheck:
    """Decodes each content digest once per process, and once per cache with a ``memo``.

    Thread-safe: two callers asking about one digest at once share one decode.
    """

    def __init__(self) -> None:
        self._verdicts: dict[str, str | None] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self.decoded = 0
        """How many files this object actually decoded (not answered from a memo)."""

    def problem(
        self, path: Path, digest: str, *, kind: Kind, memo: _Memo | None = None
    ) -> str | None:
        """Why ``path`` (whose content digest is ``digest``) cannot be sent, or None.

        Args:
            path: the file, as the recipe or cache has it.
            digest: its content digest: the memo key (same bytes, same verdict).
            kind: ``image`` or ``video``: what the fix in the message says.
            memo: the cache's key-value table, to remember good verdicts across runs.

        Returns:
            A message naming the file, what is wrong and the fix; None when it decodes whole.
        """
        with self._guard:
            lock = self._locks.setdefault(digest, threading.Lock())
        with lock:
            name = memo_name(digest)
            if digest in self._verdicts:
                verdict = self._verdicts[digest]
                if verdict is None and memo is not None and memo.get(name) is None:
                    memo.set(name, {"ok": True})  # known good in this process: share it
                return verdict
            known = memo.get(name) if memo is not None else None
            if isinstance(known, dict) and known.get("ok") is True:
                self._verdicts[digest] = None
                return None
            report = decode_report(path)
            self.decoded += 1
            what = report.problem
            verdict = None if what is None else _message(path, kind, what)
            self._verdicts[digest] = verdict
            if verdict is None and memo is not None:
                memo.set(name, {"ok": True, "frames": {s.kind: s.frames for s in report.streams}})
            return verdict


_DEFAULT = DecodeCheck()


def check_decodes(path: Path, digest: str, *, kind: Kind, memo: _Memo | None = None) -> str | None:
    """:meth:`DecodeCheck.problem` with the process-wide memo."""
    return _DEFAULT.problem(path, digest, kind=kind, memo=memo)
