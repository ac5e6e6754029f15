"""Safe YAML loading that remembers where every key and value stands in the file."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from motionflow.errors import Diagnostic, RecipeError

__all__ = ["Position", "SourceMap", "load_yaml"]

try:  # the C loader is ~10x faster; both are the *safe* loaders
    _Loader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _Loader = yaml.SafeLoader

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class Position:
    """Where a node starts: 1-based line and column, and how a scalar was quoted."""

    line: int
    column: int
    style: str | None = None
    multiline: bool = False


@dataclass
class SourceMap:
    """The text of a loaded file and the position of every value and mapping key in it."""

    filename: str
    lines: list[str]
    values: dict[Path_, Position] = field(default_factory=dict)
    keys: dict[Path_, Position] = field(default_factory=dict)

    def locate(self, path: Path_, *, at_key: bool = False, offset: int = 0) -> Position | None:
        """Return the position of ``path`` (or its nearest located ancestor).

        Args:
            path: the key path, e.g. ``("stages", "take", "with", "prompt")``.
            at_key: point at the mapping key rather than its value.
            offset: characters into a single-line scalar (for a reference inside a string).
        """
        probe = tuple(path)
        while True:
            table = self.keys if at_key and probe in self.keys else self.values
            pos = table.get(probe)
            if pos is not None:
                if offset and probe == tuple(path) and not pos.multiline:
                    quote = 1 if pos.style in ("'", '"') else 0
                    return Position(pos.line, pos.column + quote + offset, pos.style)
                return pos
            if not probe:
                return None
            probe = probe[:-1]

    def diagnostic(
        self,
        path: Path_,
        message: str,
        *,
        at_key: bool = False,
        offset: int = 0,
        severity: str = "error",
    ) -> Diagnostic:
        """Build a :class:`Diagnostic` for ``path`` showing its source line."""
        pos = self.locate(path, at_key=at_key, offset=offset)
        if pos is None:
            return Diagnostic(message, self.filename, severity=severity)
        source = self.lines[pos.line - 1] if 0 < pos.line <= len(self.lines) else ""
        return Diagnostic(message, self.filename, pos.line, pos.column, source, severity)


_constructor = yaml.constructor.SafeConstructor()


def _at_mark(smap: SourceMap, mark: yaml.Mark | None, message: str) -> Diagnostic:
    """A diagnostic at a PyYAML mark (0-based) showing that line."""
    if mark is None:
        return Diagnostic(message, smap.filename)
    line = mark.line + 1
    source = smap.lines[mark.line] if mark.line < len(smap.lines) else ""
    return Diagnostic(message, smap.filename, line, mark.column + 1, source)


def _build(node: yaml.Node, path: Path_, smap: SourceMap, problems: list[Diagnostic]) -> Any:
    mark = node.start_mark
    style = getattr(node, "style", None)
    multiline = node.end_mark.line != mark.line
    smap.values.setdefault(path, Position(mark.line + 1, mark.column + 1, style, multiline))
    if isinstance(node, yaml.MappingNode):
        _constructor.flatten_mapping(node)  # resolves YAML merge keys (<<)
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _constructor.construct_object(key_node, deep=True)
            key_mark = key_node.start_mark
            if not isinstance(key, str | int | float | bool) or key is None:
                msg = "mapping keys must be plain words; quote this key or rename it"
                problems.append(_at_mark(smap, key_mark, msg))
                continue
            key = str(key)
            child = (*path, key)
            if key in result:
                first = smap.keys[child]
                msg = (
                    f"duplicate key {key!r} (first defined on line {first.line}); YAML would"
                    " silently keep only the last one: remove or rename one of them"
                )
                problems.append(_at_mark(smap, key_mark, msg))
                continue
            smap.keys[child] = Position(key_mark.line + 1, key_mark.column + 1)
            result[key] = _build(value_node, child, smap, problems)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*path, i), smap, problems) for i, item in enumerate(node.value)]
    return _constructor.construct_object(node, deep=True)


def load_yaml(text: str, filename: str) -> tuple[Any, SourceMap]:
    """Parse ``text`` with the safe loader and return the data with its :class:`SourceMap`.

    Raises:
        RecipeError: on a syntax error or a duplicate key, located at the offending line.
    """
    smap = SourceMap(filename, text.splitlines())
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        if mark is not None and mark.line >= len(smap.lines) and exc.context_mark is not None:
            mark = exc.context_mark  # "unexpected end of stream": point where it started
        msg = f"YAML syntax error: {exc.problem or 'invalid YAML'}"
        if exc.context:
            msg += f" ({exc.context})"
        msg += "; check indentation, colons and quotes on this line or the one above"
        raise RecipeError([_at_mark(smap, mark, msg)]) from exc
    except yaml.YAMLError as exc:
        raise RecipeError([Diagnostic(f"YAML error: {exc}", filename)]) from exc
    if node is None:
        return None, smap
    problems: list[Diagnostic] = []
    try:
        data = _build(node, (), smap, problems)
    except yaml.constructor.ConstructorError as exc:
        msg = f"{exc.problem}; recipes only hold plain YAML (strings, numbers, lists, mappings)"
        raise RecipeError([_at_mark(smap, exc.problem_mark, msg)]) from exc
    if problems:
        raise RecipeError(problems)
    return data, smap
