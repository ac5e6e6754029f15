"""The installed motionflow's version, read once from its package metadata, when first asked.

``importlib.metadata`` costs about 10 ms to import, so nothing reads the version at import
time: ``installed_version()`` (and the package's ``__version__`` attribute) reads it on first
use.
"""

from __future__ import annotations

import functools

__all__ = ["installed_version"]


@functools.cache
def installed_version() -> str:
    """The version pip installed (``0+unknown`` in a source tree that was never installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("motionflow")
    except PackageNotFoundError:
        return "0+unknown"
