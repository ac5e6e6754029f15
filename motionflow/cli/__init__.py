"""The ``motionflow`` command: parses flags, calls the library, renders its events with rich.

The package is the only part of motionflow that prints, exits, or imports click or rich.
:mod:`~motionflow.cli.app` assembles the commands, each defined in the module of its noun
(``run``, ``plan``, ``cache``, ``jobs``, ...) and imported only when click asks for it; the
options, error handling and formatting they share are in ``options``, ``errors``, ``format``,
``tables`` and ``progress``.
"""

from __future__ import annotations

from motionflow.cli.app import main

__all__ = ["main"]
