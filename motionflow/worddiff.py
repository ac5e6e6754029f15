"""Word-level diffs of two texts (prompts), as ``A dancer in a [-red-]{+blue+} jacket``."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["ELLIPSIS", "Segment", "edits", "render", "word_diff"]

ELLIPSIS = "…"
"""Stands for a stretch of unchanged words left out of a diff."""

Kind = Literal["same", "del", "ins", "gap"]


@dataclass(frozen=True)
class Segment:
    """A run of words of one kind.

    Attributes:
        kind: ``same`` (in both texts), ``del`` (only in the old), ``ins`` (only in the new) or
            ``gap`` (unchanged words left out; ``words`` is empty).
        words: the words, in order.
    """

    kind: Kind
    words: tuple[str, ...]


def _opcodes(old: list[str], new: list[str]) -> Sequence[tuple[str, int, int, int, int]]:
    # autojunk would treat words frequent in a long prompt ("a", "the") as junk and misalign
    return difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes()


def edits(old: str, new: str) -> tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]:
    """What changed between two texts, without the unchanged words around it.

    Two renderings of one template edit give the same edits even when the variants' words
    around them differ, so the edits name the change and ``why`` groups instances by them.

    Returns:
        one ``(deleted words, inserted words)`` pair per changed stretch, in order; empty when
        the texts hold the same words (they may still differ in white space).
    """
    a, b = old.split(), new.split()
    return tuple(
        (tuple(a[i1:i2]), tuple(b[j1:j2])) for op, i1, i2, j1, j2 in _opcodes(a, b) if op != "equal"
    )


def _elide(words: list[str], context: int, first: bool, last: bool) -> list[Segment]:
    """An unchanged stretch, cut to ``context`` words on each side of the changes it touches."""
    keep_head = 0 if first else context
    keep_tail = 0 if last else context
    if len(words) <= keep_head + keep_tail + 1:  # eliding one word saves nothing
        return [Segment("same", tuple(words))]
    out: list[Segment] = []
    if keep_head:
        out.append(Segment("same", tuple(words[:keep_head])))
    out.append(Segment("gap", ()))
    if keep_tail:
        out.append(Segment("same", tuple(words[-keep_tail:])))
    return out


def word_diff(old: str, new: str, context: int | None = None) -> list[Segment]:
    """The word-level diff of ``old`` and ``new`` (words are runs of non-space characters).

    Args:
        old: the text before.
        new: the text now.
        context: keep this many unchanged words on each side of a change and replace longer
            unchanged stretches with a ``gap``; None keeps every word.

    Returns:
        the segments in reading order (a replacement is a ``del`` then an ``ins``). White space
        is not compared: texts that differ only in it give one ``same`` segment.
    """
    a, b = old.split(), new.split()
    codes = _opcodes(a, b)
    if context is not None and all(code[0] == "equal" for code in codes):
        return [Segment("same", tuple(a))] if a else []  # nothing changed: nothing to elide
    segments: list[Segment] = []
    for index, (op, i1, i2, j1, j2) in enumerate(codes):
        if op == "equal":
            if context is None:
                segments.append(Segment("same", tuple(a[i1:i2])))
            else:
                first, last = index == 0, index == len(codes) - 1
                segments.extend(_elide(a[i1:i2], context, first, last))
            continue
        if op in ("delete", "replace"):
            segments.append(Segment("del", tuple(a[i1:i2])))
        if op in ("insert", "replace"):
            segments.append(Segment("ins", tuple(b[j1:j2])))
    return segments


def render(segments: list[Segment]) -> str:
    """Plain text with git's word-diff markers: ``a [-red-]{+blue+} jacket``, gaps as ``…``."""
    text = ""
    previous: Kind | None = None
    for segment in segments:
        words = " ".join(segment.words)
        if segment.kind == "gap":
            part = ELLIPSIS
        elif segment.kind == "del":
            part = f"[-{words}-]"
        elif segment.kind == "ins":
            part = f"{{+{words}+}}"
        else:
            part = words
        glue = "" if not text or (previous == "del" and segment.kind == "ins") else " "
        text += glue + part
        previous = segment.kind
    return text
