"""The rules an imported archive's members and records must follow (it is untrusted input)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from motionflow.cache.manage import HEX64
from motionflow.errors import UsageError
from motionflow.money import usd_problem

__all__ = [
    "KindOf",
    "StageKindShape",
    "bad",
    "check_record",
    "importable",
    "json_problem",
    "member_kind",
]


class StageKindShape(Protocol):
    """What an import needs to know of a stage kind (a registered ``Stage`` has it)."""

    @property
    def paid(self) -> bool:
        """Whether the kind's results cost money (only those are imported)."""
        ...

    @property
    def outputs(self) -> Mapping[str, str]:
        """The kind's declared outputs: name to ``file`` or ``value``."""
        ...


KindOf = Callable[[str], StageKindShape | None]
"""The stage kind of a name, or None when this installation knows no such kind; the caller
passes it in (``motionflow.engine.references`` reads the stage registry)."""


def bad(src: Path, why: str) -> UsageError:
    msg = f"{str(src)!r} is not a usable motionflow export: {why}; nothing was imported"
    return UsageError(msg)


def member_kind(name: str) -> str | None:
    """``results``, ``blob``, ``receipt`` or ``dir`` for an allowed member name, else None."""
    path = PurePosixPath(name)
    if name.startswith("/") or "\\" in name or any(p in {"..", ""} for p in name.split("/")):
        return None
    parts = path.parts
    if parts == ("results.json",):
        return "results"
    if parts in {("blobs",), ("receipts",)}:
        return "dir"
    if len(parts) == 2 and parts[0] == "blobs" and HEX64.fullmatch(parts[1]):
        return "blob"
    if len(parts) == 2 and parts[0] == "receipts" and parts[1].endswith(".json"):
        return "receipt" if HEX64.fullmatch(parts[1].removesuffix(".json")) else None
    return None


#: The extensions of the files our stages write (``executor.store`` keeps ``path.suffix``).
_EXTENSIONS = frozenset(
    {
        *(".mp4", ".m4v", ".mov", ".mkv", ".webm"),
        *(".png", ".jpg", ".jpeg", ".gif", ".webp"),
        *(".wav", ".m4a", ".mp3", ".txt", ".json"),
    }
)
#: A free result's file (never imported, see _importable) may have any plain suffix: a python
#: stage keeps whatever its function wrote. It is still checked, so one rule covers a record.
_PLAIN_EXT = re.compile(r"(\.[a-z0-9]{1,16})?")
_DIGEST = re.compile(r"blake3:[0-9a-f]{64}")
_RECORD_FIELDS = ("stage_kind", "outputs", "meta", "created_at", "motionflow_version", "tools")
#: ``tools`` (optional): the versions of the programs that made a result, recorded, not keyed.
_MAX_TOOLS = 32
_MAX_TOOL_NAME = 64
_MAX_TOOL_VERSION = 256
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: Generous bounds on a record's JSON (ours are far smaller; a python stage's value may not be).
_MAX_TEXT = 64 << 10
_MAX_NAME = 256
_MAX_DEPTH = 32
_MAX_ITEMS = 10_000


def json_problem(value: Any, where: str, depth: int = 0) -> tuple[str, str] | None:
    """``(field, why)`` when ``value`` is not small, finite JSON (bounded depth, text, size)."""
    if depth > _MAX_DEPTH:
        return where, f"is nested deeper than {_MAX_DEPTH} levels"
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return None if math.isfinite(value) else (where, f"{value!r} is not a finite number")
    if isinstance(value, str):
        return None if len(value) <= _MAX_TEXT else (where, f"is text longer than {_MAX_TEXT}")
    if isinstance(value, list | dict):
        if len(value) > _MAX_ITEMS:
            return where, f"has more than {_MAX_ITEMS} items"
        for name, item in value.items() if isinstance(value, dict) else enumerate(value):
            if isinstance(name, str) and len(name) > _MAX_NAME:
                return where, f"has a name longer than {_MAX_NAME}"
            inner = f"{where}.{name}" if isinstance(name, str) else f"{where}[{name}]"
            problem = json_problem(item, inner, depth + 1)
            if problem is not None:
                return problem
        return None
    return where, f"holds a {type(value).__name__}"  # pragma: no cover - not from json.loads


def check_record(
    src: Path, key: str, record: Any, sizes: dict[str, int], kind_of: KindOf
) -> dict[str, Any]:
    """The record rebuilt from its known fields, if it passes the rules our own records follow.

    Args:
        src: the archive (for messages).
        key: the result's key.
        record: the result's record, as read.
        sizes: bytes of every blob the archive holds or the cache has, by digest.
        kind_of: the stage kinds this installation knows.

    Raises:
        UsageError: naming ``results.json``, the result and the field that breaks a rule.
    """
    if not HEX64.fullmatch(key) or not isinstance(record, dict):
        raise bad(src, f"results.json: result {key[:16]!r} is not a key and a record")

    def refuse(where: str, why: str) -> UsageError:
        return bad(src, f"results.json: result {key[:12]}…, field {where}: {why}")

    kind = record.get("stage_kind")
    stage = kind_of(kind) if isinstance(kind, str) else None
    if stage is None:
        raise refuse("stage_kind", f"{str(kind)[:_MAX_NAME]!r} is not a known stage kind")
    declared = stage.outputs
    outputs = record.get("outputs")
    if not isinstance(outputs, dict) or not outputs:
        raise refuse("outputs", "is not a set of outputs")
    for name, out in outputs.items():
        where = f"outputs[{name[:_MAX_NAME]!r}]"
        if not name.isidentifier() or name not in declared:
            raise refuse(
                where, f"{kind!r} declares no output of that name (it has {list(declared)})"
            )
        if not isinstance(out, dict):
            raise refuse(where, "is not an object")
        if declared[name] == "value":
            if set(out) != {"value"}:
                raise refuse(where, "a value output holds only 'value'")
            if problem := json_problem(out["value"], f"{where}.value"):
                raise refuse(*problem)
            continue
        if set(out) != {"file", "size", "ext"}:
            raise refuse(where, "a file output holds exactly 'file', 'size' and 'ext'")
        digest = out["file"]
        if not (isinstance(digest, str) and _DIGEST.fullmatch(digest)):
            raise refuse(f"{where}.file", "is not a digest 'blake3:<64 hex digits>'")
        if digest not in sizes:
            raise refuse(f"{where}.file", f"the file {digest[:19]}… is not in the archive")
        size = out["size"]
        if isinstance(size, bool) or not isinstance(size, int) or size != sizes[digest]:
            raise refuse(f"{where}.size", f"{str(size)[:32]!r} is not the file's size")
        ext = out["ext"]
        plain = isinstance(ext, str) and _PLAIN_EXT.fullmatch(ext) and not stage.paid
        if ext not in _EXTENSIONS and not plain:
            allowed = ", ".join(sorted(_EXTENSIONS))
            raise refuse(f"{where}.ext", f"{str(out['ext'])[:32]!r} is not one of {allowed}")
    meta = record.get("meta", {})
    if not isinstance(meta, dict):
        raise refuse("meta", "is not an object")
    if "estimated_usd" in meta and (why := usd_problem(meta["estimated_usd"])):
        raise refuse("meta.estimated_usd", why[:_MAX_NAME])
    if problem := json_problem(meta, "meta"):
        raise refuse(*problem)
    if not isinstance(meta.get("job_id", ""), str):
        raise refuse("meta.job_id", "is not text")
    for name in ("created_at", "motionflow_version"):
        value = record.get(name, "")
        if not isinstance(value, str) or len(value) > 64:
            raise refuse(name, "is not a short text")
    if "tools" in record and (problem := _tools_problem(record["tools"])):
        raise refuse(*problem)
    return {name: record[name] for name in _RECORD_FIELDS if name in record}


def _tools_problem(tools: Any) -> tuple[str, str] | None:
    """``(field, why)`` when ``tools`` is not at most 32 short texts named by short texts."""
    if not isinstance(tools, dict):
        return "tools", "is not an object of tool names and versions"
    if len(tools) > _MAX_TOOLS:
        return "tools", f"names more than {_MAX_TOOLS} tools"
    for name, version in tools.items():
        if not isinstance(name, str) or not name or len(name) > _MAX_TOOL_NAME:
            return "tools", f"{str(name)[:_MAX_TOOL_NAME]!r} is not a short tool name"
        if not isinstance(version, str) or len(version) > _MAX_TOOL_VERSION:
            return f"tools[{name!r}]", "is not a short text"
        if _CONTROL.search(name) or _CONTROL.search(version):  # printed by `why`
            return f"tools[{name[:_MAX_TOOL_NAME]!r}]", "holds control characters"
    return None


def importable(record: dict[str, Any], kind_of: KindOf) -> str | None:
    """Why a valid record is not taken (the trust model, docs/cache.md), or None to take it."""
    stage = kind_of(record["stage_kind"])
    if stage is None:  # pragma: no cover - check_record refused it already
        return "its stage kind is unknown here"
    if not stage.paid:
        return "not a paid result: recomputed locally, for free"
    if any(stage.outputs[name] != "file" for name in record["outputs"]):
        return "holds values, which are never imported"  # pragma: no cover - no such kind yet
    return None
