"""The fake server's job worker: fetch the references, probe them, render or stub the output."""

from __future__ import annotations

import asyncio
import math
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from motionflow.errors import MotionflowError
from motionflow.fakeapi.jobs import CAPS, SubmitRequest
from motionflow.fakeapi.placeholder import placeholder_video
from motionflow.fakeapi.store import FileStore

__all__ = ["WorkOutcome", "billed_seconds", "produce_output"]


_MAX_FETCH_BYTES = 200 * 1024 * 1024
_samples_lock = threading.Lock()


def billed_seconds(reference_seconds: float | None, duration: float, cap: float) -> float:
    """What the service bills (docs/api.md): ``min(ceil(reference), duration, cap)``.

    The fake's own reading of the contract, not the client's estimate
    (``providers.pricing.billable_seconds``): were both one function, a mistake in it could
    never show up as a difference. Without a reference length yet, ``min(duration, cap)``.
    """
    bound = math.ceil(min(duration, cap))
    if reference_seconds is None:
        return float(bound)
    return float(min(math.ceil(round(reference_seconds, 3)), bound))


@dataclass(frozen=True)
class WorkOutcome:
    """What the worker produced: billable seconds, the output's name, or an error."""

    billable: float
    output_name: str | None
    error: tuple[str, str] | None


def _fetch(client: httpx.Client, url: str, dest: Path, headers: dict[str, str]) -> None:
    with client.stream("GET", url, headers=headers) as response:
        if response.status_code != 200:
            msg = f"HTTP {response.status_code}"
            raise ValueError(msg)
        size = 0
        with dest.open("wb") as out:
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > _MAX_FETCH_BYTES:
                    msg = "larger than 200 MB"
                    raise ValueError(msg)
                out.write(chunk)
    if size == 0:
        msg = "empty body"
        raise ValueError(msg)


def _samples(root: Path) -> tuple[Path, Path]:
    from motionflow.media.samples import DANCE_NAME, HERO_NAME, make_sample_assets

    folder = root / "samples"
    with _samples_lock:
        if not (folder / DANCE_NAME).is_file():
            asyncio.run(make_sample_assets(folder))
    return folder / HERO_NAME, folder / DANCE_NAME


def produce_output(
    *,
    job_id: str,
    request: SubmitRequest,
    work_root: Path,
    store: FileStore,
    fetch: bool,
    render: bool,
    will_fail: bool,
    internal_headers: dict[str, str],
    on_billable: Callable[[float], None],
) -> WorkOutcome:
    """Do what the real service does between accepting a job and completing it.

    Args:
        job_id: the job's id (names its work folder and labels the video).
        request: the validated submit body.
        work_root: a scratch folder; the job's subfolder is removed afterwards.
        store: where the output goes.
        fetch: GET the reference URLs (a failure fails the job).
        render: make a real video with ffmpeg; otherwise store a tiny placeholder.
        will_fail: a fault decided the job fails: skip the output.
        internal_headers: headers marking fetches from the server to itself.
        on_billable: called as soon as the billable seconds are known.

    Returns:
        The outcome; never raises for a bad reference, a failed fetch or a failed render.
    """
    from motionflow.fakeapi.render import render_simulated_video
    from motionflow.media.probe import probe

    cap = CAPS[request.character_orientation]
    billable = billed_seconds(None, request.duration, cap)
    work = work_root / job_id
    work.mkdir(parents=True, exist_ok=True)
    try:
        image = video = None
        if fetch:
            image, video = work / "reference_image", work / "reference_video"
            with httpx.Client(trust_env=False, timeout=60, follow_redirects=True) as client:
                for field, url, dest in (
                    ("reference_image", request.reference_image, image),
                    ("reference_video", request.reference_video, video),
                ):
                    try:
                        _fetch(client, url, dest, internal_headers)
                    except (httpx.HTTPError, ValueError, OSError) as exc:
                        msg = f"Could not fetch {field} {url!r}: {exc}."
                        return WorkOutcome(billable, None, ("reference_fetch_failed", msg))
            try:
                seconds = probe(video).duration
                probe(image)
            except MotionflowError:
                msg = "The reference media could not be decoded as an image and a video."
                return WorkOutcome(billable, None, ("invalid_reference", msg))
            billable = billed_seconds(seconds, request.duration, cap)
        on_billable(billable)
        if will_fail:
            return WorkOutcome(billable, None, None)
        # Not named after the job: the real output URLs do not give the job id away.
        name = store.new_name("output.mp4")
        if not render:
            store.path_for(name).write_bytes(placeholder_video())
            return WorkOutcome(billable, name, None)
        if image is None or video is None:
            image, video = _samples(work_root)
        try:
            asyncio.run(
                render_simulated_video(
                    image=image,
                    video=video,
                    dest=store.path_for(name),
                    mode=request.mode,
                    seconds=billable,
                    keep_original_sound=request.keep_original_sound,
                    label=job_id,
                    prompt=request.prompt,
                    details=(
                        f"{request.mode} · {billable:g} s"
                        f" · orientation {request.character_orientation}"
                    ),
                )
            )
        except MotionflowError as exc:
            return WorkOutcome(billable, None, ("render_failed", f"Rendering failed: {exc}"))
        return WorkOutcome(billable, name, None)
    finally:
        shutil.rmtree(work, ignore_errors=True)
