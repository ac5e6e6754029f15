"""``out/<recipe>/manifest.json``: what the last run made, for reasons and no-op detection."""

from __future__ import annotations

import contextlib
import json
import os
import stat
from pathlib import Path
from typing import Any

from motionflow.errors import UsageError
from motionflow.graph import Instance
from motionflow.outfile import atomic_write_text
from motionflow.recipe.matrix import Variant

__all__ = ["Manifest", "entry_name"]

MANIFEST = "manifest.json"


def entry_name(instance: Instance, variant: Variant) -> str:
    """``stage/variant`` (plus ``/take-N``): one entry per stage, variant and take."""
    tail = f"/take-{instance.take_label}" if instance.take_label else ""
    return f"{instance.stage}/{variant.id}{tail}"


def _safe_rel(rel: Any) -> bool:
    """True for ``variant/file``-like paths: relative, no ``..``, no backslash, no NUL."""
    if not isinstance(rel, str) or not rel or "\\" in rel or "\0" in rel:
        return False
    # as Path(rel).parts would say, without building a Path per file (400,000 at 100,000
    # variants): not absolute, no "..", at least one part
    parts = rel.split("/")
    return not rel.startswith("/") and ".." not in parts and any(p not in {"", "."} for p in parts)


def _stamp(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in value)
    )


def _clean_entry(entry: Any) -> dict[str, Any] | None:
    """A manifest entry of the shape :meth:`Manifest.record` writes, or None."""
    if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
        return None
    if not isinstance(entry.get("components"), dict):
        return None
    clean: dict[str, Any] = {"key": entry["key"], "components": entry["components"]}
    files = entry.get("files")
    if files is not None:
        if not isinstance(files, dict):
            return None
        if not all(_safe_rel(rel) and _stamp(st) for rel, st in files.items()):
            return None
        clean["files"] = files
    return clean


class Manifest:
    """The key, key components and written files of every (stage, variant, take) last run."""

    def __init__(
        self, path: Path, entries: dict[str, dict[str, Any]], owner: str | None = None
    ) -> None:
        self.path = path
        self._base = str(path.parent)
        self.entries = entries
        self.damaged = ""
        self.owner = owner
        """The recipe file whose folder this is (relative to the project root when inside
        it), as recorded by the last run; None for a manifest of an older motionflow."""
        self.scope: tuple[set[str], set[str]] | None = None
        """(stages, variant ids) a targeted run may forget entries of; None: every entry."""
        self._original = self._text()

    def _text(self) -> str:
        return json.dumps([self.entries, self.owner], sort_keys=True)

    @classmethod
    def load(cls, out_dir: Path) -> Manifest:
        """Read the manifest of ``out_dir``; a missing or unreadable one is empty.

        The manifest is derived data (what the last run wrote), so a damaged one is rebuilt,
        never trusted: entries of the wrong shape are dropped (their outputs are written again
        from the cache, for free), and so are file paths that leave ``out_dir``, which would
        otherwise name files for :meth:`keep_only` to delete. ``damaged`` says what was wrong.
        """
        path = out_dir / MANIFEST
        damaged = ""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            data = {}
        except (OSError, ValueError, RecursionError) as exc:
            data, damaged = {}, f"it cannot be read as JSON ({exc})"
        raw = data.get("entries", {}) if isinstance(data, dict) else None
        if not isinstance(raw, dict):
            raw, damaged = {}, damaged or "it is not an object with entries"
        entries: dict[str, dict[str, Any]] = {}
        for name, entry in raw.items():
            clean = _clean_entry(entry)
            if clean is None:
                damaged = damaged or f"its entry {name!r:.60} is malformed"
            else:
                entries[name] = clean
        owner = data.get("recipe") if isinstance(data, dict) else None
        manifest = cls(path, entries, owner if isinstance(owner, str) and owner else None)
        manifest.damaged = damaged
        return manifest

    def components(self, name: str) -> dict[str, Any] | None:
        """Key components recorded for ``name`` by the last run, if any."""
        entry = self.entries.get(name)
        return entry.get("components") if entry else None

    def files_current(self, name: str, key: str) -> bool:
        """True when ``name`` was written for ``key`` and its files are untouched since."""
        entry = self.entries.get(name)
        if not entry or entry.get("key") != key or not entry.get("files"):
            return False
        base = self._base
        for rel, (size, mtime_ns) in entry["files"].items():
            try:
                st = os.stat(os.path.join(base, rel))  # noqa: PTH116, PTH118 - hot: no Path
            except OSError:
                return False
            if st.st_size != size or st.st_mtime_ns != mtime_ns:
                return False
        return True

    def record(
        self, name: str, key: str, components: dict[str, Any], files: dict[str, list[int]] | None
    ) -> None:
        """Remember what was made for ``name``; ``files`` None keeps the recorded files."""
        entry = {"key": key, "components": components}
        old = self.entries.get(name, {})
        if files is not None:
            entry["files"] = files
        elif old.get("key") == key and "files" in old:
            entry["files"] = old["files"]
        self.entries[name] = entry

    def limit_to(self, stages: set[str], variants: set[str]) -> None:
        """Let :meth:`keep_only` forget only entries of these stages and variant ids (a
        targeted run: other variants' outputs stay, however stale they may be)."""
        self.scope = (set(stages), set(variants))

    def _in_scope(self, name: str) -> bool:
        if self.scope is None:
            return True
        stage, _, rest = name.partition("/")
        return stage in self.scope[0] and rest.partition("/")[0] in self.scope[1]

    def keep_only(self, names: set[str]) -> list[Path]:
        """Forget entries of stages, variants or takes no longer in the recipe, and delete the
        files they wrote if nobody changed them since. Returns the deleted files.

        After :meth:`limit_to`, only entries within its stages and variants are considered.
        """
        base = self.path.parent
        staying = [n for n in self.entries if n in names or not self._in_scope(n)]
        kept = {rel for n in staying for rel in self.entries[n].get("files", {})}
        deleted: list[Path] = []
        for name in [n for n in self.entries if n not in names and self._in_scope(n)]:
            for rel, (size, mtime_ns) in self.entries.pop(name).get("files", {}).items():
                path = base / rel
                try:
                    st = path.lstat()
                    inside = path.resolve().parent.is_relative_to(base.resolve())
                except (OSError, RuntimeError):
                    continue
                if not inside or not stat.S_ISREG(st.st_mode):  # only our own plain files
                    continue
                if rel not in kept and (st.st_size, st.st_mtime_ns) == (size, mtime_ns):
                    try:
                        path.unlink()
                    except OSError as exc:
                        from motionflow.outfile import out_write_error

                        raise out_write_error(base, exc, "(remove) a stale output") from exc
                    deleted.append(path)
                    with contextlib.suppress(OSError):  # only if now empty
                        path.parent.rmdir()
        return deleted

    def _file_text(self) -> str:
        """The file: one line per entry, each as compact JSON (sorted keys).

        ``json.dumps(..., indent=1)`` of the whole manifest goes through the pure-Python encoder:
        1.3 s of a one-change re-run of 10,000 variants. Line per entry keeps it readable, and
        diffs of it small, through the C encoder.
        """
        names = sorted(self.entries)
        lines = ['{"entries": {']
        for i, name in enumerate(names):
            entry = json.dumps(self.entries[name], sort_keys=True)
            lines.append(f" {json.dumps(name)}: {entry}{',' if i < len(names) - 1 else ''}")
        lines.append("},")
        if self.owner is not None:
            lines.append(f'"recipe": {json.dumps(self.owner)},')
        lines.append('"version": 1}')
        return "\n".join(lines) + "\n"

    def save(self) -> bool:
        """Write the manifest if anything changed; returns whether it wrote."""
        text = self._text()
        if text == self._original and self.path.is_file():
            return False
        try:
            atomic_write_text(self.path, self._file_text())
        except OSError as exc:
            from motionflow.outfile import out_write_error

            kept = " (the results stay in the cache: nothing is paid or computed again)"
            raise out_write_error(self.path.parent, exc, "the manifest", kept=kept) from exc
        self._original = text
        return True

    def claim(self, recipe: Path, display: str, root: Path) -> None:
        """Make ``recipe`` the owner of this folder (recorded at the next :meth:`save`).

        Two recipes with the same ``name:`` would share ``out/<name>/`` and overwrite (and
        delete) each other's results, so a folder whose recorded owner is another recipe file
        that still exists and still has this name is refused. An owner that is gone, or was
        renamed (a recipe moved or renamed by the user), is taken over silently.

        Args:
            recipe: the recipe file, resolved.
            display: the recipe's path as the user wrote it, for the message.
            root: the project folder (the owner is recorded relative to it when inside).

        Raises:
            UsageError: another recipe file with the same name owns the folder.
        """
        recipe, root = recipe.resolve(), root.resolve()
        mine = recipe.relative_to(root).as_posix() if recipe.is_relative_to(root) else str(recipe)
        owner = self.owner
        if owner is not None and owner != mine:
            other = root / owner
            if other.resolve() != recipe and _names_folder(other, self.path.parent.name):
                folder = self.path.parent
                msg = (
                    f"{display!r} and {str(other)!r} have the same name "
                    f"{folder.name!r}, so both would write (and overwrite) {str(folder)!r}, "
                    f"which belongs to {owner!r}. Fix: give one of them another `name:` (e.g. "
                    f"`name: {folder.name}-2`); or, if {owner!r} is no longer used, delete "
                    f"{str(folder)!r} (its results stay in the cache: the next run writes them "
                    "out again without paying). Nothing was run"
                )
                raise UsageError(msg)
        self.owner = mine


def _names_folder(recipe: Path, name: str) -> bool:
    """True when the recipe file exists and (as far as a quick read tells) is named ``name``."""
    import yaml

    from motionflow.limits import MAX_RECIPE_BYTES

    try:
        if not recipe.is_file():
            return False
        if recipe.stat().st_size > MAX_RECIPE_BYTES:
            return True
        data = yaml.safe_load(recipe.read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):
        return True  # it is there but unreadable: assume it still writes here
    declared = data.get("name") if isinstance(data, dict) else None
    return str(declared or recipe.stem) == name
