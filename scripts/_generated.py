"""Writing a generated doc, or checking that the committed one is current (``--check``)."""

from __future__ import annotations

import sys
from pathlib import Path


def write_or_check(target: Path, text: str, script: str) -> int:
    """Write ``text`` to ``target``; with ``--check`` on the command line, only compare.

    Returns:
        The exit code: 1 when ``--check`` finds the file out of date, else 0.
    """
    if "--check" in sys.argv[1:]:
        current = target.read_text(encoding="utf-8") if target.exists() else ""
        if current != text:
            print(f"{target} is out of date: run python scripts/{script}")
            return 1
        return 0
    target.write_text(text, encoding="utf-8")
    print(f"wrote {target}")
    return 0
