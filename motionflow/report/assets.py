"""The gallery page's template, stylesheet and script, inlined so the folder opens offline.

They live as files beside this module (``static/``: ``gallery.css``, ``gallery.js`` and the
Jinja2 template ``gallery.html.j2``), so an editor and a linter see CSS, JavaScript and HTML;
this module reads them once, on import.
"""

from __future__ import annotations

from importlib.resources import files

__all__ = ["CSS", "JS", "TEMPLATE"]

_STATIC = files("motionflow.report") / "static"

CSS = (_STATIC / "gallery.css").read_text(encoding="utf-8")
"""The stylesheet, inlined in a ``<style>`` element."""

JS = (_STATIC / "gallery.js").read_text(encoding="utf-8")
"""The script, inlined in a ``<script>`` element whose hash the page's CSP allows."""

TEMPLATE = (_STATIC / "gallery.html.j2").read_text(encoding="utf-8")
"""The page, a Jinja2 template rendered in the sandbox with autoescaping."""
