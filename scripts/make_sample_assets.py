"""Write the quickstart's sample assets: ``python scripts/make_sample_assets.py [DEST]``."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if importlib.util.find_spec("motionflow") is None:
    # Run from a checkout without `pip install -e .`: import the package from the repo.
    sys.path.insert(0, str(ROOT))

from motionflow.errors import MotionflowError  # noqa: E402
from motionflow.media.samples import make_sample_assets  # noqa: E402

__all__ = ["main"]

DEFAULT_DEST = ROOT / "recipes" / "assets"


def main(argv: list[str]) -> int:
    """Synthesise ``hero.png`` and ``dance.mp4`` into ``argv[1]`` (default: recipes/assets).

    Args:
        argv: the command line, as in ``sys.argv``.

    Returns:
        The process exit code.
    """
    dest = Path(argv[1]) if len(argv) > 1 else DEFAULT_DEST
    try:
        paths = asyncio.run(make_sample_assets(dest))
    except MotionflowError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for path in paths:
        print(f"{path}  {path.stat().st_size / 1024:.1f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
