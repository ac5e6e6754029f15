"""Write docs/stage-reference.md from the built-in stages' parameter models."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # scripts/, run from anywhere
from _generated import write_or_check

from motionflow.stages.reference import render_reference

TARGET = Path(__file__).resolve().parents[1] / "docs" / "stage-reference.md"


def main() -> int:
    """Regenerate the file (or, with --check, exit 1 when it is out of date)."""
    return write_or_check(TARGET, render_reference(), "gen_stage_reference.py")


if __name__ == "__main__":
    raise SystemExit(main())
