"""Synthesise the quickstart's sample assets (a character image and a dance clip) with ffmpeg."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from pathlib import Path

from motionflow.media.ffmpeg import ffmpeg_path, run_ffmpeg

__all__ = ["DANCE_NAME", "HERO_NAME", "make_sample_assets"]

HERO_NAME = "hero.png"
"""File name of the sample character image (512x768 PNG)."""

DANCE_NAME = "dance.mp4"
"""File name of the sample reference clip (4 s, 640x360, 25 fps, H.264 + AAC)."""

# Bit-exact muxing and no metadata: the same ffmpeg build writes the same bytes every time.
_DETERMINISTIC = ("-map_metadata", "-1", "-fflags", "+bitexact")


def _boxes(parts: list[tuple[str, str, str, str, str]]) -> str:
    return ",".join(f"drawbox=x={x}:y={y}:w={w}:h={h}:color={c}:t=fill" for x, y, w, h, c in parts)


# A cartoon character, standing, on a plain background: (x, y, w, h, colour) per body part.
_HERO_PARTS = [
    ("0", "730", "iw", "38", "0xC9B99A"),  # floor
    ("204", "520", "44", "185", "0x2B3A67"),  # left leg
    ("264", "520", "44", "185", "0x2B3A67"),  # right leg
    ("196", "700", "58", "26", "0x1B1B1B"),  # left shoe
    ("258", "700", "58", "26", "0x1B1B1B"),  # right shoe
    ("236", "276", "40", "30", "0xF2C6A0"),  # neck
    ("176", "300", "160", "232", "0xD7263D"),  # jacket
    ("246", "300", "20", "232", "0xF4F4F4"),  # zip stripe
    ("124", "308", "48", "196", "0xD7263D"),  # left arm
    ("340", "308", "48", "196", "0xD7263D"),  # right arm
    ("128", "504", "40", "40", "0xF2C6A0"),  # left hand
    ("344", "504", "40", "40", "0xF2C6A0"),  # right hand
    ("186", "130", "140", "150", "0xF2C6A0"),  # head
    ("178", "106", "156", "50", "0x4A2C2A"),  # hair
    ("178", "106", "22", "110", "0x4A2C2A"),  # left sideburn
    ("312", "106", "22", "110", "0x4A2C2A"),  # right sideburn
    ("218", "190", "20", "22", "0x1B1B1B"),  # left eye
    ("274", "190", "20", "22", "0x1B1B1B"),  # right eye
    ("234", "246", "44", "9", "0x9E2A2B"),  # mouth
]

# A blocky dancer: sways left/right every 2 s, bounces twice a second, swings arms and legs.
# drawbox evaluates its position once, so each moving part is a colour source placed by
# ``overlay``, whose x/y expressions are evaluated per frame: (name, w, h, colour, x, y).
_CX = "(W/2+150*sin(2*PI*t/2))"  # centre x of the figure
_UP = "(18*abs(sin(2*PI*t)))"  # how far it is off the floor
_SWING = "sin(4*PI*t)"
_DANCE_PARTS = [
    ("head", 70, 64, "0xF2C6A0", f"{_CX}-35", f"70-{_UP}"),
    ("body", 90, 100, "0xF5B700", f"{_CX}-45", f"138-{_UP}"),
    ("larm", 50, 18, "0xF5B700", f"{_CX}-95", f"150-{_UP}+40*{_SWING}"),
    ("rarm", 50, 18, "0xF5B700", f"{_CX}+45", f"150-{_UP}-40*{_SWING}"),
    ("lleg", 30, 62, "0x2B3A67", f"{_CX}-40+10*{_SWING}", f"238-{_UP}"),
    ("rleg", 30, 62, "0x2B3A67", f"{_CX}+10-10*{_SWING}", f"238-{_UP}"),
]


def _dance_graph() -> str:
    chains = [
        "color=c=0x7FC8A9:s=640x360:r=25:d=4,drawbox=x=0:y=300:w=iw:h=60:color=0x3B2F4A:t=fill[v0]"
    ]
    for i, (name, w, h, colour, x, y) in enumerate(_DANCE_PARTS):
        chains.append(f"color=c={colour}:s={w}x{h}:r=25[{name}]")
        chains.append(f"[v{i}][{name}]overlay=x='{x}':y='{y}':eval=frame[v{i + 1}]")
    chains.append(f"[v{len(_DANCE_PARTS)}]format=yuv420p[vout]")
    chains.append("sine=frequency=220:beep_factor=4:sample_rate=44100:duration=4[aout]")
    return ";".join(chains)


async def make_sample_assets(dest: Path) -> list[Path]:
    """Write ``hero.png`` and ``dance.mp4`` into ``dest``, replacing any existing ones.

    Both are synthesised by ffmpeg from its built-in sources (no downloads), are small, and
    are byte-identical across runs with the same ffmpeg build. ``hero.png`` is a 512x768
    cartoon character; ``dance.mp4`` is a 4 s, 640x360, 25 fps H.264/yuv420p clip with
    ``+faststart``, a dancing figure and an AAC beep track. Both satisfy the model's media rules.

    Args:
        dest: the directory to write into; created if missing.

    Returns:
        The paths written, ``[dest / "hero.png", dest / "dance.mp4"]``.

    Raises:
        ToolNotFoundError: no ffmpeg binary can be found.
        MediaError: ffmpeg fails.
    """
    dest.mkdir(parents=True, exist_ok=True)
    hero, dance = dest / HERO_NAME, dest / DANCE_NAME
    hero_args = [
        *("-f", "lavfi", "-i", "color=c=0xBFE3F2:s=512x768:r=1"),
        *("-vf", _boxes(_HERO_PARTS) + ",format=rgb24", "-frames:v", "1"),
        *_DETERMINISTIC,
        *("-c:v", "png", "-f", "image2", "-update", "1"),
    ]
    dance_args = [
        *("-filter_complex", _dance_graph(), "-map", "[vout]", "-map", "[aout]", "-t", "4"),
        *("-c:v", "libx264", "-preset", "medium", "-crf", "30", "-pix_fmt", "yuv420p"),
        *("-g", "50", "-c:a", "aac", "-b:a", "64k"),
        *_DETERMINISTIC,
        *("-movflags", "+faststart", "-f", "mp4"),
    ]
    async with asyncio.TaskGroup() as group:
        group.create_task(
            _write(hero, hero_args, what=f"synthesise the sample image {str(hero)!r}")
        )
        group.create_task(
            _write(dance, dance_args, what=f"synthesise the sample clip {str(dance)!r}")
        )
    return [hero, dance]


async def _write(path: Path, args: list[str], *, what: str) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.part{path.suffix}")
    try:
        await run_ffmpeg([*args, ffmpeg_path(tmp)], what=what)
        tmp.replace(path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
