"""Size limits on what motionflow reads, in one place (cheap to import: no dependencies)."""

from __future__ import annotations

__all__ = ["MAX_RECIPE_BYTES"]

MAX_RECIPE_BYTES = 1 << 20
"""A recipe is a short YAML text: a larger file is refused before it is read."""
