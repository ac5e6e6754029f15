"""Media helpers: the ffmpeg binary, probing with PyAV, and synthesised sample assets."""

from __future__ import annotations

__all__: list[str] = []
