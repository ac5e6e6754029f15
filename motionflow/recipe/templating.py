"""Jinja2 rendering of ``{{ ... }}`` in a sandbox with strict undefined variables."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

__all__ = ["TemplateProblem", "has_jinja", "render_template", "template_names"]

if TYPE_CHECKING:
    from types import TracebackType

    from jinja2 import Template

    from motionflow.recipe.sandbox import BoundedEnvironment


class TemplateProblem(Exception):  # noqa: N818 - internal signal, turned into a Diagnostic
    """A template could not be compiled or rendered; the message says how to fix it."""

    def __init__(self, message: str, line: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


_SIMPLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def has_jinja(text: str) -> bool:
    """True when ``text`` contains Jinja2 markup (so plain strings skip the engine entirely)."""
    return "{{" in text or "{%" in text or "{#" in text


@cache
def _environment() -> BoundedEnvironment:
    # Imported lazily: plain recipes (and the no-op fast path) never pay for Jinja2.
    from jinja2 import StrictUndefined

    from motionflow.recipe.sandbox import BoundedEnvironment

    return BoundedEnvironment(undefined=StrictUndefined, autoescape=False)


@cache
def _compile(source: str) -> Template:
    from jinja2 import TemplateSyntaxError

    try:
        return _environment().from_string(source)
    except TemplateSyntaxError as exc:
        raise TemplateProblem(f"template syntax error: {exc.message}", exc.lineno) from exc


def render_template(source: str, context: Mapping[str, Any]) -> str:
    """Render ``source`` with ``context`` in the sandbox.

    Raises:
        TemplateProblem: syntax errors, undefined names (with a "did you mean"), and anything the
            sandbox forbids, each with a message that says what to change.
    """
    if _is_simple(source):
        # Only "{{ name }}" substitutions: the same text Jinja2 would render (str() of the
        # value), without building a template context; a large sweep renders 10x faster.
        def value(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in context:
                return _slow_render(source, context)  # raises the full, helpful error
            return str(context[name])

        return _SIMPLE.sub(value, source)
    return _slow_render(source, context)


@cache
def template_names(source: str) -> frozenset[str]:
    """The free variable names a template reads (so renders can be shared between variants
    that agree on them). A template that does not compile reads "everything"."""
    if _is_simple(source):
        return frozenset(_SIMPLE.findall(source))
    from jinja2 import TemplateSyntaxError, meta

    try:
        return frozenset(meta.find_undeclared_variables(_environment().parse(source)))
    except TemplateSyntaxError:
        return frozenset({"\x00unparsable"})


@cache
def _is_simple(source: str) -> bool:
    rest = _SIMPLE.sub("", source)
    return "{" not in rest and "}" not in rest


def _slow_render(source: str, context: Mapping[str, Any]) -> str:
    from jinja2 import TemplateError, UndefinedError
    from jinja2.exceptions import SecurityError

    from motionflow.recipe.sandbox import TemplateLimitError, render_bounded

    template = _compile(source)
    try:
        return render_bounded(template.root_render_func, template.new_context(dict(context)))
    except UndefinedError as exc:
        message = str(exc.message or exc)
        name = message.split("'")[1] if message.count("'") >= 2 else ""
        hint = ""
        close = difflib.get_close_matches(name, list(context), n=1) if name else []
        if close:
            hint = f"; did you mean {close[0]!r}?"
        available = ", ".join(sorted(context)) or "none"
        msg = (
            f"template uses an undefined name: {message}{hint} (defined here: {available}); "
            "add it under vars: or matrix:, or pass --var NAME=VALUE"
        )
        raise TemplateProblem(msg, _template_line(template, exc.__traceback__)) from exc
    except TemplateLimitError as exc:
        msg = (
            f"template exceeds a limit of the sandbox: {exc}; templates are for short text "
            "(see 'Template limits' in docs/recipes.md): compute large values in a python stage"
        )
        raise TemplateProblem(msg, _template_line(template, exc.__traceback__)) from exc
    except SecurityError as exc:
        msg = (
            f"template does something the sandbox forbids: {exc}; templates may only format values"
        )
        raise TemplateProblem(msg, _template_line(template, exc.__traceback__)) from exc
    except RecursionError as exc:
        msg = (
            "template recursion too deep: a macro (or a recursive loop) calls itself without "
            "end; give it a condition that stops"
        )
        raise TemplateProblem(msg) from exc
    except MemoryError as exc:
        msg = "template ran out of memory; templates are for short text"
        raise TemplateProblem(msg) from exc
    except TemplateError as exc:
        raise TemplateProblem(f"template error: {exc}") from exc
    except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
        msg = f"template failed while rendering: {exc}"
        raise TemplateProblem(msg, _template_line(template, exc.__traceback__)) from exc


def _template_line(template: Template, tb: TracebackType | None) -> int:
    """The template line the innermost frame of compiled template code was running, or 0."""
    line = 0
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = template.get_corresponding_lineno(tb.tb_lineno)
        tb = tb.tb_next
    return line
