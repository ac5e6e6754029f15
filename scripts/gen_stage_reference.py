"""Write docs/stage-reference.md from the built-in stages' parameter models."""

from __future__ import annotations

import sys
from pathlib import Path

from motionflow.stages.reference import render_reference

TARGET = Path(__file__).resolve().parents[1] / "docs" / "stage-reference.md"


def main() -> int:
    """Regenerate the file (or, with --check, exit 1 when it is out of date)."""
    text = render_reference()
    if "--check" in sys.argv[1:]:
        current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else ""
        if current != text:
            print(f"{TARGET} is out of date: run python scripts/gen_stage_reference.py")
            return 1
        return 0
    TARGET.write_text(text, encoding="utf-8")
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
