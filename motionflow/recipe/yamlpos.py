"""Safe YAML loading that remembers where every key and value stands in the file."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Protocol

import yaml

from motionflow.errors import Diagnostic, RecipeError

__all__ = [
    "MAX_YAML_DEPTH",
    "MAX_YAML_NODES",
    "Position",
    "SourceMap",
    "int_digits_problem",
    "load_yaml",
]

#: Most values (scalars, lists, mappings) that aliases (``*name``) and merges (``<<``) may copy
#: in one recipe. Hand-written recipes stay far below it; an "alias bomb" (nine aliases of nine
#: aliases ... of a list) would expand to billions. Values written out are bounded by the
#: recipe's size (``MAX_RECIPE_BYTES``), so a 100,000-value matrix axis is read.
MAX_YAML_NODES = 100_000
#: Deepest nesting of lists and mappings; deeper YAML crashes the C parser (or Python's stack).
MAX_YAML_DEPTH = 200

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


class _Mark(Protocol):
    """A PyYAML position (``yaml.Mark``, or the C parser's own), 0-based."""

    @property
    def line(self) -> int: ...
    @property
    def column(self) -> int: ...


def _at_mark(smap: SourceMap, mark: _Mark | None, message: str) -> Diagnostic:
    """A diagnostic at a PyYAML mark (0-based) showing that line."""
    if mark is None:
        return Diagnostic(message, smap.filename)
    line = mark.line + 1
    source = smap.lines[mark.line] if mark.line < len(smap.lines) else ""
    return Diagnostic(message, smap.filename, line, mark.column + 1, source)


class _TooBigError(Exception):
    """The document expands past :data:`MAX_YAML_NODES`; ``mark`` is the alias that did it."""

    def __init__(self, mark: yaml.Mark | None) -> None:
        super().__init__()
        self.mark = mark


@dataclass
class _Budget:
    """Nodes left to build, the nodes built once already (reached again only by an alias) and
    where the alias now being expanded is used."""

    left: int = MAX_YAML_NODES
    built: set[int] = field(default_factory=set)
    alias_mark: yaml.Mark | None = None


def _merged_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """How many key/value pairs ``node`` holds once its merge keys (<<) are resolved.

    Memoised per node, so a chain of merges of merges costs its size in the file, not the
    (possibly exponential) size it expands to; :meth:`flatten_mapping` copies lists of pairs.
    """
    if not isinstance(node, yaml.MappingNode):
        return 0
    known = sizes.get(id(node))
    if known is not None:
        return known
    sizes[id(node)] = 0  # a merge cycle cannot be written in YAML, but be safe
    total = 0
    for key_node, value_node in node.value:
        if key_node.tag != "tag:yaml.org,2002:merge":
            total += 1
        elif isinstance(value_node, yaml.SequenceNode):
            total += sum(_merged_size(sub, sizes) for sub in value_node.value)
        else:
            total += _merged_size(value_node, sizes)
        total = min(total, MAX_YAML_NODES + 1)
    sizes[id(node)] = total
    return total


_MERGE = "tag:yaml.org,2002:merge"


def _flatten_merges(node: yaml.MappingNode) -> None:
    """Resolve the merge keys (``<<``) of ``node`` in place, as PyYAML 6.0.3 did.

    Ours, not :meth:`SafeConstructor.flatten_mapping`: PyYAML 6.0.4 drops repeated keys
    while merging, which changed what a recipe means and hid merge bombs from
    :func:`_merged_size`; every PyYAML version must read a recipe the same way.
    """
    merge: list[tuple[yaml.Node, yaml.Node]] = []
    index = 0
    while index < len(node.value):
        key_node, value_node = node.value[index]
        if key_node.tag == _MERGE:
            del node.value[index]
            if isinstance(value_node, yaml.MappingNode):
                _flatten_merges(value_node)
                merge.extend(value_node.value)
            elif isinstance(value_node, yaml.SequenceNode):
                submerge = []
                for subnode in value_node.value:
                    if not isinstance(subnode, yaml.MappingNode):
                        raise yaml.constructor.ConstructorError(
                            "while constructing a mapping",
                            node.start_mark,
                            f"expected a mapping for merging, but found {subnode.id}",
                            subnode.start_mark,
                        )
                    _flatten_merges(subnode)
                    submerge.append(subnode.value)
                for value in reversed(submerge):
                    merge.extend(value)
            else:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    "expected a mapping or list of mappings for merging, but found "
                    + value_node.id,
                    value_node.start_mark,
                )
        else:
            if key_node.tag == "tag:yaml.org,2002:value":
                key_node.tag = "tag:yaml.org,2002:str"
            index += 1
    if merge:
        node.value = merge + node.value


def int_digits_problem(exc: ValueError) -> str:
    """The cause of ``exc`` in a user's words (Python's own names a setting users cannot set)."""
    if "integer string conversion" in str(exc):
        return f"an integer of more than {sys.get_int_max_str_digits():,} digits"
    return str(exc)


def _build(
    node: yaml.Node,
    path: Path_,
    smap: SourceMap,
    problems: list[Diagnostic],
    budget: _Budget,
    used_at: yaml.Mark | None = None,
) -> Any:
    mark = node.start_mark
    outermost_alias = False
    if id(node) in budget.built and budget.alias_mark is None:  # reached through an alias
        budget.alias_mark, outermost_alias = used_at or mark, True
    if budget.alias_mark is not None:  # a copy; values written out are bounded by the file size
        budget.left -= 1
        if budget.left < 0:
            raise _TooBigError(budget.alias_mark)
    budget.built.add(id(node))
    style = getattr(node, "style", None)
    multiline = node.end_mark.line != mark.line
    smap.values.setdefault(path, Position(mark.line + 1, mark.column + 1, style, multiline))
    result: Any
    if isinstance(node, yaml.MappingNode):
        if _merged_size(node, {}) > MAX_YAML_NODES:
            raise _TooBigError(budget.alias_mark or mark)
        _flatten_merges(node)  # resolves YAML merge keys (<<)
        result = {}
        for key_node, value_node in node.value:
            key_mark = key_node.start_mark
            if not isinstance(key_node, yaml.ScalarNode):  # never expand an aliased key
                key = None
            else:
                key = _constructor.construct_object(key_node, deep=True)
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
            result[key] = _build(value_node, child, smap, problems, budget, key_mark)
    elif isinstance(node, yaml.SequenceNode):
        result = []
        after = mark  # an alias item has no mark of its own: point just after the item before
        for i, item in enumerate(node.value):
            result.append(_build(item, (*path, i), smap, problems, budget, after))
            after = item.end_mark if item.end_mark.line == mark.line else mark
    else:
        try:
            result = _constructor.construct_object(node, deep=True)
            if isinstance(result, int) and not isinstance(result, bool):
                str(result)  # 0x/0o/0b integers skip the digit limit when read, not when written
        except ValueError as exc:  # e.g. an integer past Python's 4,300-digit conversion limit
            cause = int_digits_problem(exc)
            msg = f"cannot read this value: {cause}; write a shorter number (or quote it as text)"
            problems.append(_at_mark(smap, node.start_mark, msg))
            result = None
    if outermost_alias:
        budget.alias_mark = None
    return result


_TOO_DEEP = (
    f"lists and mappings nest more than {MAX_YAML_DEPTH} deep here; a recipe never needs"
    " that: flatten the structure"
)


def _check_depth(text: str, smap: SourceMap) -> None:
    """Refuse nesting deeper than :data:`MAX_YAML_DEPTH` before composing (which recurses)."""
    depth = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                raise RecipeError([_at_mark(smap, event.start_mark, _TOO_DEEP)])
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _tab_indent(smap: SourceMap, mark: _Mark | None) -> tuple[int, int] | None:
    """The 1-based line and column of a tab in the indentation of the line YAML failed on.

    YAML forbids tabs in indentation, and the parser says only that a tab "cannot start any
    token" (or worse, once it is inside a mapping): the cause users need is the tab.
    """
    if mark is None or not 0 <= mark.line < len(smap.lines):
        return None
    text = smap.lines[mark.line]
    indent = text[: len(text) - len(text.lstrip(" \t"))]
    if "\t" not in indent:
        return None
    return mark.line + 1, indent.index("\t") + 1


def load_yaml(text: str, filename: str) -> tuple[Any, SourceMap]:
    """Parse ``text`` with the safe loader and return the data with its :class:`SourceMap`.

    Raises:
        RecipeError: on a syntax error or a duplicate key, located at the offending line.
    """
    smap = SourceMap(filename, text.splitlines())
    try:
        _check_depth(text, smap)
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        if "maximum nesting depth" in str(exc.problem):  # libyaml >= 0.2.5's own limit (1,000)
            # its scanner reads ahead of our event count: the same refusal, located where it
            # noticed (deeper than our limit, on the same line)
            raise RecipeError([_at_mark(smap, mark, _TOO_DEEP)]) from exc
        if mark is not None and mark.line >= len(smap.lines) and exc.context_mark is not None:
            mark = exc.context_mark  # "unexpected end of stream": point where it started
        tab = _tab_indent(smap, mark)
        if tab is not None:  # libyaml's own words ("cannot start any token") hide the cause
            line, column = tab
            source = smap.lines[line - 1]
            fix = (
                "replace the tab with spaces (as many as the lines around it use)"
                if source.strip()
                else "delete the tab (the line is otherwise blank)"
            )
            msg = f"line {line} uses a tab for indentation; YAML needs spaces: {fix}"
            raise RecipeError([Diagnostic(msg, filename, line, column, source)]) from exc
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
        data = _build(node, (), smap, problems, _Budget())
    except _TooBigError as exc:
        msg = (
            f"the YAML expands to more than {MAX_YAML_NODES:,} values through aliases (*name) or"
            " merges (<<) used here (an alias bomb?); write the values out or use fewer aliases"
        )
        raise RecipeError([_at_mark(smap, exc.mark, msg)]) from exc
    except RecursionError as exc:  # a chain of thousands of aliases of aliases (or merges)
        msg = (
            "aliases (*name) or merges (<<) chain thousands of levels deep; a recipe never"
            " needs that: write the values out or use fewer aliases"
        )
        raise RecipeError([Diagnostic(msg, filename)]) from exc
    except yaml.constructor.ConstructorError as exc:
        msg = f"{exc.problem}; recipes only hold plain YAML (strings, numbers, lists, mappings)"
        raise RecipeError([_at_mark(smap, exc.problem_mark, msg)]) from exc
    if problems:
        raise RecipeError(problems)
    return data, smap
