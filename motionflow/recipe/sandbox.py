"""The bounded Jinja2 sandbox: templates may format values, not exhaust memory or time.

Jinja2's own sandbox stops templates from reaching Python internals; this one also caps what a
hostile template can make the process compute. Every cap raises :class:`TemplateLimitError`
*before* the expensive work where the cost can be estimated (``**``, ``*`` on sequences, padding
widths, ``replace``, ``join``), and right after it otherwise:

- integers: at most :data:`MAX_INT_BITS` bits;
- one string, list or mapping: at most :data:`MAX_LENGTH` characters and items, nested ones
  counted in full (so shared references cannot multiply);
- ``range()``: at most :data:`MAX_RANGE` numbers per call, :data:`MAX_ITERATIONS` loop iterations
  per render over every ``{% for %}`` together;
- text written (the output, macro bodies and ``{% set %}`` blocks): :data:`MAX_OUTPUT`;
- time: :data:`MAX_SECONDS` per render, checked in every operator, attribute, call, loop step
  and written chunk; runaway recursion ends as :class:`RecursionError` at the render boundary.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment
from jinja2.utils import generate_lorem_ipsum, pass_context
from jinja2.visitor import NodeTransformer

__all__ = [
    "MAX_INT_BITS",
    "MAX_ITERATIONS",
    "MAX_LENGTH",
    "MAX_OUTPUT",
    "MAX_RANGE",
    "MAX_SECONDS",
    "BoundedEnvironment",
    "TemplateLimitError",
    "render_bounded",
]

MAX_INT_BITS = 4096
MAX_LENGTH = 1_000_000
MAX_OUTPUT = 1 << 20
MAX_RANGE = 10_000
MAX_ITERATIONS = 1_000_000
MAX_SECONDS = 2.0
_MAX_LIPSUM_PARAGRAPHS = 100
_MAX_LIPSUM_WORDS = 1_000
# Width and precision in "%" and "{}" format strings; "*" and nested "{}" take them from arguments.
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d*)(?:\.(\*|\d*))?")
_BRACE_SPEC = re.compile(r"\{[^{}:]*:([^{}]*)(\{?)")
_DIGITS = re.compile(r"\d+")
_LOOP = "_motionflow_loop"
_SIZED = "_motionflow_sized"


class TemplateLimitError(SecurityError):
    """A template went past one of the sandbox's caps; the message names the cap."""


@dataclass
class _Budget:
    deadline: float
    iterations: int = 0
    written: int = 0


_BUDGET: ContextVar[_Budget | None] = ContextVar("motionflow_template_budget", default=None)


def _tick() -> _Budget | None:
    budget = _BUDGET.get()
    if budget is not None and time.monotonic() > budget.deadline:
        msg = f"rendering took longer than {MAX_SECONDS:g} s"
        raise TemplateLimitError(msg)
    return budget


def _size(value: Any, limit: int = MAX_LENGTH) -> int:
    """Characters plus items in ``value``, nested containers in full; stops past ``limit``."""
    total = 0
    stack: list[Iterator[Any]] = [iter((value,))]
    while stack and total <= limit:
        item = next(stack[-1], _END)
        if item is _END:
            stack.pop()
        elif isinstance(item, str | bytes):
            total += len(item)
        elif isinstance(item, Mapping):
            total += len(item)
            stack.append(iter(item.keys()))
            stack.append(iter(item.values()))
        elif isinstance(item, list | tuple | set | frozenset):
            total += len(item)
            stack.append(iter(item))
        elif isinstance(item, range):
            total += len(item)
        else:
            total += 1
    return total


_END = object()


def _too_long(size: int, what: str = "the result") -> TemplateLimitError:
    msg = f"{what} would hold {size:,} or more characters and items (limit: {MAX_LENGTH:,})"
    return TemplateLimitError(msg)


def _check_value(value: Any) -> Any:
    """Refuse an integer or a string/container past the caps; return the value unchanged."""
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        msg = f"an integer of {value.bit_length():,} bits (limit: {MAX_INT_BITS:,} bits)"
        raise TemplateLimitError(msg)
    if isinstance(value, str | bytes | list | tuple | set | frozenset | Mapping | range):
        size = _size(value)
        if size > MAX_LENGTH:
            raise _too_long(size)
    return value


def _check_count(value: Any, what: str) -> None:
    if isinstance(value, int) and abs(value) > MAX_LENGTH:
        msg = f"{what} of {value:,} (limit: {MAX_LENGTH:,})"
        raise TemplateLimitError(msg)


def _check_format(text: Any, args: Iterable[Any]) -> None:
    """Refuse a %- or {}-format string whose widths or precisions pad past MAX_LENGTH."""
    if not isinstance(text, str):
        return
    numbers = [n for m in _PERCENT_SPEC.finditer(text) for n in m.groups() if n]
    from_args = "*" in numbers
    for match in _BRACE_SPEC.finditer(text):
        numbers.extend(_DIGITS.findall(match.group(1)))
        from_args = from_args or bool(match.group(2))
    for number in numbers:
        if number != "*" and (len(number) > len(str(MAX_LENGTH)) or int(number) > MAX_LENGTH):
            msg = f"a format width or precision above {MAX_LENGTH:,} in {text[:40]!r}"
            raise TemplateLimitError(msg)
    if from_args:  # widths given as arguments: "%*d", "{:{}}"
        for arg in args:
            _check_count(arg, "a format argument")


def _check_power(left: Any, right: Any) -> None:
    if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
        bits = right * (abs(left).bit_length() - 1) + 1  # a lower bound of the result's size
        if bits > MAX_INT_BITS:
            msg = f"{left} ** {right} is an integer of about {bits:,} bits"
            msg += f" (limit: {MAX_INT_BITS:,} bits)"
            raise TemplateLimitError(msg)


def _check_product(left: Any, right: Any) -> None:
    if isinstance(left, int) and isinstance(right, int):
        if left.bit_length() + right.bit_length() > MAX_INT_BITS + 1:
            msg = f"a product of more than {MAX_INT_BITS:,} bits"
            raise TemplateLimitError(msg)
        return
    sequence, times = (right, left) if isinstance(left, int) else (left, right)
    if isinstance(times, int) and isinstance(sequence, str | bytes | list | tuple) and times > 0:
        size = _size(sequence) * times
        if size > MAX_LENGTH:
            raise _too_long(size, "the repeated sequence")


def _check_replace(text: str, old: Any, new: Any, count: Any = -1) -> None:
    if not isinstance(old, str) or not isinstance(new, str) or len(new) <= len(old):
        return
    found = text.count(old) if old else len(text) + 1
    if isinstance(count, int) and count >= 0:
        found = min(found, count)
    size = len(text) + found * (len(new) - len(old))
    if size > MAX_LENGTH:
        raise _too_long(size, "the replaced text")


def _bounded_items(iterable: Any, separator: Any) -> list[Any]:
    """``iterable`` as a list, refused once joining it with ``separator`` would be too long."""
    items: list[Any] = []
    total = 0
    gap = len(separator) if isinstance(separator, str) else 0
    for item in iterable:
        total += _size(item) + gap
        if total > MAX_LENGTH:
            raise _too_long(total, "the joined text")
        items.append(item)
    return items


def _check_padding(text: Any, width: Any, per_line: bool = False) -> None:
    if isinstance(width, int):
        _check_count(width, "a width")
    if per_line and isinstance(text, str):
        pad = width if isinstance(width, int) else len(width) if isinstance(width, str) else 0
        size = len(text) + (text.count("\n") + 1) * max(pad, 0)
        if size > MAX_LENGTH:
            raise _too_long(size, "the indented text")


def _check_wordwrap(text: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    wrap = kwargs.get("wrapstring", args[3] if len(args) > 3 else None)
    if isinstance(text, str) and isinstance(wrap, str):
        size = len(text) + (len(text) + 1) * len(wrap)
        if size > MAX_LENGTH:
            raise _too_long(size, "the wrapped text")


def _filter_guard(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` with its size-producing arguments checked first and its result checked after."""
    wants_first = bool(getattr(func, "jinja_pass_arg", None))

    @functools.wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _tick()
        rest = args[1:] if wants_first else args  # drop the context/environment argument
        value, params = (rest[0], rest[1:]) if rest else (None, ())
        if name == "join":
            separator = kwargs.get("d", params[0] if params else "")
            items = _bounded_items(value, separator) if value is not None else value
            args = (*args[: len(args) - len(rest)], items, *params)
        elif name == "replace" and isinstance(value, str) and len(params) >= 2:
            _check_replace(value, *params[:3])
        elif name == "format":
            _check_format(value, (*params, *kwargs.values()))
        elif name in {"center", "indent"}:
            width = kwargs.get("width", params[0] if params else 0)
            _check_padding(value, width, per_line=name == "indent")
        elif name == "wordwrap":
            _check_count(kwargs.get("width", params[0] if params else 0), "a width")
            _check_wordwrap(value, rest, kwargs)
        elif name in {"batch", "slice", "truncate"}:
            for arg in (*params, *kwargs.values()):
                _check_count(arg, f"a {name} size")
        return _check_value(func(*args, **kwargs))

    return guarded


def _str_method_guard(text: str, method: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
    for arg in args:
        _check_count(arg, f"an argument of str.{method}()")
    if method == "replace" and len(args) >= 2:
        _check_replace(text, *args[:3])
    elif method == "expandtabs" and args and isinstance(args[0], int):
        size = len(text) + text.count("\t") * args[0]
        if size > MAX_LENGTH:
            raise _too_long(size, "the expanded text")
    elif method == "join" and args:
        return (_bounded_items(args[0], text), *args[1:])
    return args


def _range(*args: int) -> range:
    numbers = range(*args)
    try:
        count = len(numbers)
    except OverflowError:
        count = MAX_RANGE + 1
    if count > MAX_RANGE:
        msg = f"range() of more than {MAX_RANGE:,} numbers"
        raise TemplateLimitError(msg)
    return numbers


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    if n > _MAX_LIPSUM_PARAGRAPHS or max > _MAX_LIPSUM_WORDS:
        msg = (
            f"lipsum(n={n}, max={max}) (limit: n={_MAX_LIPSUM_PARAGRAPHS},"
            f" max={_MAX_LIPSUM_WORDS} words)"
        )
        raise TemplateLimitError(msg)
    return generate_lorem_ipsum(n, html, min, max)


@pass_context
def _loop(context: Context, iterable: Any) -> Iterator[Any]:
    """Every ``{% for %}`` iterates through this: it counts steps against the render's budget."""
    del context  # pass_context keeps Jinja2 from running the loop at compile time
    return _counted(iter(iterable))


def _counted(iterator: Iterator[Any]) -> Iterator[Any]:
    for item in iterator:
        budget = _tick()
        if budget is not None:
            budget.iterations += 1
            if budget.iterations > MAX_ITERATIONS:
                msg = f"loops ran more than {MAX_ITERATIONS:,} times in one template"
                raise TemplateLimitError(msg)
        yield item


class _Buffer(list[str]):
    """A macro's or ``{% set %}`` block's buffer: what is written counts against the budget."""

    def append(self, text: str) -> None:
        _charge(len(text))
        super().append(text)

    def extend(self, texts: Iterable[str]) -> None:
        texts = list(texts)
        _charge(sum(len(text) for text in texts))
        super().extend(texts)


def _charge(size: int) -> None:
    budget = _tick()
    if budget is not None:
        budget.written += size
        if budget.written > MAX_OUTPUT:
            msg = f"the template writes more than {MAX_OUTPUT:,} characters"
            raise TemplateLimitError(msg)


class _Bounder(NodeTransformer):
    """Routes loop iterables and ``~`` operands and results through the budget checks."""

    # Jinja2 dispatches on node class names, hence the method names.
    def visit_For(self, node: nodes.For) -> nodes.Node:  # noqa: N802
        self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, _LOOP, [], [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:  # noqa: N802
        self.generic_visit(node)
        node.nodes = [_sized(part) for part in node.nodes]
        return _sized(node)


def _sized(node: nodes.Expr) -> nodes.Expr:
    return nodes.Filter(node, _SIZED, [], [], None, None, lineno=node.lineno)


class _BoundedCodeGenerator(CodeGenerator):
    def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:  # noqa: N802
        _Bounder().visit(node)
        super().visit_Template(node, frame)

    def buffer(self, frame: Frame) -> None:
        frame.buffer = self.temporary_identifier()
        self.writeline(f"{frame.buffer} = environment.new_buffer()")


class BoundedEnvironment(SandboxedEnvironment):
    """Jinja2's sandbox with caps on integer size, length, loops, written text and time."""

    code_generator_class = _BoundedCodeGenerator
    intercepted_binops = frozenset({"**", "*", "+", "%", "//"})

    def __init__(self, **options: Any) -> None:
        super().__init__(finalize=_check_value, **options)
        self.globals["range"] = _range
        self.globals["lipsum"] = _lipsum
        self.filters = {name: _filter_guard(name, f) for name, f in self.filters.items()}
        self.filters[_LOOP] = _loop
        self.filters[_SIZED] = _check_value

    @staticmethod
    def new_buffer() -> list[str]:
        """A buffer for compiled templates (see :class:`_BoundedCodeGenerator`)."""
        return _Buffer()

    def call_binop(  # the signature is Jinja2's
        self,
        context: Context,  # noqa: ARG002
        operator: str,
        left: Any,
        right: Any,
    ) -> Any:
        _tick()
        if operator == "**":
            _check_power(left, right)
        elif operator == "*":
            _check_product(left, right)
        elif operator == "%" and isinstance(left, str):
            _check_format(left, right if isinstance(right, tuple) else (right,))
        return _check_value(self.binop_table[operator](left, right))

    def getattr(self, obj: Any, attribute: str) -> Any:
        _tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _tick()
        return super().getitem(obj, argument)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        text = value.__self__

        @functools.wraps(wrapped)
        def bounded(*args: Any, **kwargs: Any) -> str:
            values = [*args, *kwargs.values()]
            if value.__name__ == "format_map" and args and isinstance(args[0], Mapping):
                values = list(args[0].values())
            _check_format(text, values)
            result: str = _check_value(wrapped(*args, **kwargs))
            return result

        return bounded

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        _tick()
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str) and isinstance(getattr(__obj, "__name__", None), str):
            args = _str_method_guard(owner, __obj.__name__, args)
            for arg in kwargs.values():
                _check_count(arg, f"an argument of str.{__obj.__name__}()")
        result = _check_value(SandboxedEnvironment.call(__self, __context, __obj, *args, **kwargs))
        if isinstance(owner, list | dict | set):  # l.extend(l) in a loop grows in place
            _check_value(owner)
        return result


def render_bounded(root: Callable[[Context], Iterator[str]], context: Context) -> str:
    """Run a compiled template's ``root_render_func`` within the caps and return its text.

    Raises:
        TemplateLimitError: a cap was reached (the message names it).
    """
    token = _BUDGET.set(_Budget(deadline=time.monotonic() + MAX_SECONDS))
    try:
        parts: list[str] = []
        for chunk in root(context):
            _charge(len(chunk))
            parts.append(chunk)
        return "".join(parts)
    finally:
        _BUDGET.reset(token)
