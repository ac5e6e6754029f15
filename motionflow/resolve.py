"""Binding an instance's references to artifacts, validating its parameters, and its key."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, get_origin

from pydantic import BaseModel, ValidationError

from motionflow.artifacts import FileArtifact
from motionflow.graph import GatherSlot, Instance, Interp, Slot
from motionflow.keys import canonical_json
from motionflow.stages.base import BaseStage

__all__ = [
    "UNRESOLVED",
    "Bound",
    "bind",
    "key_components",
    "known_components",
    "record_outputs",
    "short_tool_version",
    "tool_changes",
    "tool_versions",
]


class _Unresolved:
    """Marks a value an earlier stage has not produced yet."""

    _instance: _Unresolved | None = None

    def __new__(cls) -> _Unresolved:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<unresolved>"


UNRESOLVED = _Unresolved()


@dataclass
class Bound:
    """An instance's parameters after binding.

    Attributes:
        params: the validated model (complete), or a partial model built without validation
            when some fields wait for earlier stages.
        complete: every reference was resolved and the parameters validated.
        errors: ``(parameter path, message)`` for every invalid parameter.
        waiting: names of parameters whose values are not produced yet.
    """

    params: BaseModel | None
    complete: bool
    errors: list[tuple[tuple[str | int, ...], str]]
    waiting: set[str]


def _resolve_slot(
    slot: Slot,
    known: Mapping[str, Mapping[str, Any]],
    inputs: Mapping[str, FileArtifact | None],
) -> Any:
    if slot.upstream is None:
        artifact = inputs.get(slot.ref.name)
        return UNRESOLVED if artifact is None else artifact
    outputs = known.get(slot.upstream.id)
    if outputs is None:
        return UNRESOLVED
    field = str(slot.ref.field)
    if field not in outputs:
        msg = (
            f"{slot.upstream.label} produced no {slot.ref.field!r} output "
            f"(it produced: {', '.join(outputs) or 'nothing'})"
        )
        raise LookupError(msg)
    return outputs[field]


def _resolve(value: Any, known: Any, inputs: Any) -> Any:
    if isinstance(value, Slot):
        return _resolve_slot(value, known, inputs)
    if isinstance(value, GatherSlot):
        items = [_resolve_slot(Slot(value.ref, u), known, inputs) for u in value.upstreams]
        return UNRESOLVED if any(i is UNRESOLVED for i in items) else items
    if isinstance(value, Interp):
        parts = [_resolve(p, known, inputs) for p in value.parts]
        if any(p is UNRESOLVED for p in parts):
            return UNRESOLVED
        for part, raw in zip(parts, value.parts, strict=True):
            if isinstance(part, FileArtifact):
                ref = raw.ref if isinstance(raw, Slot) else raw
                msg = f"{ref} is a file and cannot be part of a longer string; use it alone"
                raise LookupError(msg)
        return "".join(str(p) for p in parts)
    if isinstance(value, dict):
        return {k: _resolve(v, known, inputs) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, known, inputs) for v in value]
    return value


def _contains_unresolved(value: Any) -> bool:
    if value is UNRESOLVED:
        return True
    if isinstance(value, dict):
        return any(_contains_unresolved(v) for v in value.values())
    if isinstance(value, list):
        return any(_contains_unresolved(v) for v in value)
    return False


def bind(
    instance: Instance,
    known: Mapping[str, Mapping[str, Any]],
    inputs: Mapping[str, FileArtifact | None],
) -> Bound:
    """Resolve references with what is ``known`` and validate against the stage's model.

    Errors on parameters that still wait for an earlier stage are not reported: they are
    checked again when the value exists.
    """
    model = instance.impl.Params
    errors: list[tuple[tuple[str | int, ...], str]] = []
    values: dict[str, Any] = {}
    failed: set[str] = set()
    for name, raw in instance.params.items():
        try:
            values[name] = _resolve(raw, known, inputs)
        except LookupError as exc:
            errors.append(((name,), str(exc.args[0])))
            failed.add(name)
    for name, raw in instance.params.items():  # a gathered list into a one-file parameter
        gathered = values.get(name)
        if not isinstance(raw, GatherSlot) or not isinstance(gathered, list):
            continue
        if name not in model.model_fields or _takes_list(model, name):
            continue  # untyped (a python stage's keyword) or a list: keep the list
        if len(gathered) == 1:
            values[name] = gathered[0]
        else:
            msg = (
                f"{raw.ref} gathers {len(gathered)} results over the variants, but {name!r} "
                "takes one; reference a stage that is the same for every variant, or use a "
                "parameter that takes a list"
            )
            errors.append(((name,), msg))
            failed.add(name)
            del values[name]
    waiting = {k for k, v in values.items() if _contains_unresolved(v)}
    try:
        params: BaseModel | None = model.model_validate(
            {k: v for k, v in values.items() if k not in waiting} if waiting else values
        )
    except ValidationError as exc:
        params = None
        for err in exc.errors():
            loc = tuple(err["loc"])
            if loc and (loc[0] in waiting or loc[0] in failed):
                continue
            if not loc and waiting:  # a model-wide rule judges the whole model: not yet
                continue
            text = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                import difflib

                fields = list(model.model_fields)
                close = difflib.get_close_matches(str(loc[-1]), fields, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                text = f"unknown parameter {loc[-1]!r}; {hint}parameters: {', '.join(fields)}"
            elif err["type"] == "missing":
                text = f"missing required parameter {loc[-1]!r}"
            else:
                got = err.get("input")
                if err["type"] != "value_error" and not isinstance(got, dict | list | FileArtifact):
                    shown = repr(got)
                    shown = shown if len(shown) <= 60 else shown[:57] + "..."
                    text = f"{text} (got {shown})"
                where = ".".join(str(p) for p in loc)
                raw_value = instance.params.get(str(loc[0])) if loc else None
                if isinstance(raw_value, Slot) and raw_value.upstream is None:
                    where += f" (input {raw_value.ref.name!r})"  # the recipe item to fix
                text = f"{where}: {text}" if where else text
            errors.append((loc, text))
    given = _fields(params) if params is not None else {}
    if not all(isinstance(v, _PLAIN) for v in given.values()):
        # NaN and infinities have no canonical form: no key, no request
        for loc, number in _non_finite(given, ()):
            where = ".".join(str(p) for p in loc)
            msg = (
                f"{where}: {number!r} is not a finite number; write an ordinary number "
                "(e.g. 1.5), or quote it to pass the text"
            )
            errors.append((loc, msg))
    if waiting:
        # Waiting fields hold UNRESOLVED, so estimates can tell "not known yet" from a default.
        partial: dict[str, Any] = {
            k: (UNRESOLVED if k in waiting else v) for k, v in values.items()
        }
        return Bound(model.model_construct(**partial), False, errors, waiting)
    return Bound(params, params is not None and not errors, errors, waiting)


_NAMES: dict[type[BaseModel], tuple[str, ...]] = {}


def _names(model: type[BaseModel]) -> tuple[str, ...]:
    """A model's field names (pydantic's ``model_fields`` is a property: once per model)."""
    names = _NAMES.get(model)
    if names is None:
        names = _NAMES[model] = tuple(model.model_fields)
    return names


#: Values that cannot hold a NaN: most parameters, checked without walking them.
_PLAIN = (str, int, type(None))


def _fields(params: BaseModel) -> dict[str, Any]:
    values = {k: getattr(params, k, None) for k in _names(type(params))}
    values.update(params.model_extra or {})
    return values


def _non_finite(
    value: Any, loc: tuple[str | int, ...]
) -> list[tuple[tuple[str | int, ...], float]]:
    """Where ``value`` holds a NaN or an infinity (a float, or inside lists and mappings)."""
    if isinstance(value, float):
        return [] if math.isfinite(value) else [(loc, value)]
    if isinstance(value, BaseModel):
        return _non_finite(_fields(value), loc)
    if isinstance(value, dict):
        return [hit for k, v in value.items() for hit in _non_finite(v, (*loc, str(k)))]
    if isinstance(value, list | tuple):
        return [hit for i, v in enumerate(value) for hit in _non_finite(v, (*loc, i))]
    return []


def _takes_list(model: type[BaseModel], name: str) -> bool:
    info = model.model_fields.get(name)
    annotation = info.annotation if info is not None else None
    return annotation is list or get_origin(annotation) is list


def _key_value(value: Any) -> Any:
    if isinstance(value, FileArtifact):
        return {"$file": value.digest}
    if isinstance(value, BaseModel):
        return {k: _key_value(getattr(value, k)) for k in _names(type(value))}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        msg = f"a path ({value}) cannot enter a cache key; pass files as references"
        raise TypeError(msg)
    if isinstance(value, dict):
        return {str(k): _key_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_key_value(v) for v in value]
    return value


def key_components(instance: Instance, params: BaseModel, provider: str) -> dict[str, Any]:
    """Everything that determines the instance's output, with artifacts as digests.

    Raises:
        ValueError: the stage could not describe its environment (e.g. a python stage whose
            function cannot be imported).
    """
    fields = {k: _key_value(getattr(params, k)) for k in _names(type(params))}
    fields.update({k: _key_value(v) for k, v in (params.model_extra or {}).items()})
    components = {
        "kind": instance.impl.kind,
        "kind_version": instance.impl.version,
        "params": fields,
        "take": instance.take,
        "env": instance.impl.environment(params, provider),
    }
    if instance.labels:  # a gathering stage draws or orders by them
        components["labels"] = instance.labels
    return components


def known_components(
    instance: Instance, params: BaseModel, provider: str
) -> tuple[dict[str, Any], list[str]]:
    """The key components known so far, and the parameters that wait for earlier stages.

    With every input known, this is :func:`key_components` and ``[]``. Otherwise the waiting
    parameters are left out (and named), and so is the environment when the stage cannot
    describe it from partial parameters. A reviewed plan records these, so what the reviewer
    saw (a rendered prompt, a duration) is compared before the instance's key exists.

    Raises:
        ValueError: as :func:`key_components`, when every input is known.
    """
    values = {k: getattr(params, k, UNRESOLVED) for k in type(params).model_fields}
    values.update(params.model_extra or {})
    pending = {k for k, v in values.items() if _contains_unresolved(v)}
    if not pending:
        return key_components(instance, params, provider), []
    fields: dict[str, Any] = {}
    for name, value in values.items():
        if name in pending:
            continue
        try:  # unvalidated values (they wait with their neighbours) may not be plain JSON
            shown = _key_value(value)
            canonical_json(shown)
        except (TypeError, ValueError):
            pending.add(name)
            continue
        fields[name] = shown
    components: dict[str, Any] = {
        "kind": instance.impl.kind,
        "kind_version": instance.impl.version,
        "params": fields,
        "take": instance.take,
    }
    # a stage kind may need its waiting parameters to describe its environment: then it is
    # compared once the key is known
    with contextlib.suppress(Exception):
        components["env"] = instance.impl.environment(params, provider)
    if instance.labels:
        components["labels"] = instance.labels
    return components, sorted(pending)


_UNKNOWN_TOOL = "unknown"
_MAX_TOOLS = 32
_MAX_TOOL_TEXT = 256


def tool_versions(instance: Instance, params: BaseModel | None) -> dict[str, str]:
    """The versions of the external programs that make ``instance``'s bytes on this machine.

    They are recorded with its result (``tools`` in the record and receipts, shown by ``why``)
    but are never part of its key. Never raises: a version that cannot be read is
    ``"unknown"``, and a stage kind without a ``tools`` method has none.
    """
    tools = getattr(instance.impl, "tools", None)
    if tools is None or getattr(tools, "__func__", None) is BaseStage.tools:
        return {}  # the default (no external program): nothing to call, per instance
    try:
        found = tools(params)
    except Exception:  # noqa: BLE001 - a broken third-party kind: nothing to record
        return {}
    if not isinstance(found, Mapping):
        return {}
    versions: dict[str, str] = {}
    for name, version in list(found.items())[:_MAX_TOOLS]:
        text = version if isinstance(version, str) and version.strip() else _UNKNOWN_TOOL
        versions[str(name)[:64]] = text.strip()[:_MAX_TOOL_TEXT]
    return versions


def short_tool_version(name: str, version: str) -> str:
    """``7.1`` for ``ffmpeg version 7.1 Copyright (c) ...``: the word after ``<name> version``.

    Other texts are cut to 40 characters.
    """
    words = version.split()
    if len(words) >= 3 and words[0].lower() == name.lower() and words[1] == "version":
        return words[2]
    return version if len(version) <= 40 else version[:37] + "..."


def tool_changes(recorded: Any, current: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """``(tool, recorded version, version here)`` for every tool whose version differs.

    ``recorded`` is a result record's ``tools`` (None for results made before tools were
    recorded: nothing can be said to have changed). A tool missing on either side, or whose
    version could not be read, is not a change.
    """
    if not isinstance(recorded, Mapping):
        return []
    changes: list[tuple[str, str, str]] = []
    for name in sorted(set(recorded) & set(current)):
        old, new = recorded[name], current[name]
        if not isinstance(old, str) or _UNKNOWN_TOOL in (old, new) or old == new:
            continue
        changes.append((name, old, new))
    return changes


def record_outputs(record: Mapping[str, Any], blob_path: Any) -> dict[str, Any]:
    """Turn a stored result record into outputs: files as :class:`FileArtifact`, values as-is."""
    outputs: dict[str, Any] = {}
    for name, out in record.get("outputs", {}).items():
        if "file" in out:
            outputs[name] = FileArtifact(out["file"], blob_path(out["file"]), out.get("ext", ""))
        else:
            outputs[name] = out.get("value")
    return outputs
