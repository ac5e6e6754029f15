"""Writing results into ``out/<recipe>/<variant>/``, each with a JSON receipt."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from motionflow.errors import CacheError, UsageError
from motionflow.graph import Instance
from motionflow.manifest import Manifest, entry_name
from motionflow.outfile import atomic_copy, atomic_write_text, out_write_error
from motionflow.recipe.matrix import Variant
from motionflow.version import installed_version

__all__ = ["materialize"]


def _receipt(
    recipe: str,
    instance: Instance,
    variant: Variant,
    key: str,
    components: dict[str, Any],
    record: dict[str, Any],
) -> dict[str, Any]:
    params = components.get("params", {})
    return {
        "recipe": recipe,
        "stage": instance.stage,
        "kind": instance.impl.kind,
        "variant": variant.id,
        "matrix": dict(variant.values),
        "gathered": instance.labels,
        "take": instance.take_label or 1,
        "key": key,
        "parameters": params,
        "inputs": {
            k: v["$file"] for k, v in params.items() if isinstance(v, dict) and "$file" in v
        },
        "environment": components.get("env", {}),
        # the programs (ffmpeg) that made the bytes: recorded, never keyed; {} for results
        # made before they were recorded
        "tools": record.get("tools") if isinstance(record.get("tools"), dict) else {},
        "outputs": record.get("outputs", {}),
        "generation": record.get("meta", {}),
        **({"imported": record["imported"]} if "imported" in record else {}),
        "created_at": record.get("created_at"),
        "motionflow_version": record.get("motionflow_version", installed_version()),
    }


def _receipt_outdated(
    manifest: Manifest, name: str, receipt_rel: str, out_dir: Path, record: dict[str, Any]
) -> bool:
    """The record of an unchanged key was replaced since its receipt was written (a rebuild,
    ``--rebuild-on-tool-change``): the files are written again, with the fresh receipt.

    Usually decided from the receipt's mtime recorded in the manifest (written after the record
    was made: current); only a receipt older than the record is read to compare.
    """
    made = record.get("created_at")
    if not isinstance(made, str):
        return False
    try:
        made_ns = int(datetime.fromisoformat(made).timestamp() * 1e9)
    except (ValueError, OverflowError, OSError):
        return False
    stamp = manifest.entries.get(name, {}).get("files", {}).get(receipt_rel)
    if stamp and stamp[1] >= made_ns:
        return False
    try:
        written = json.loads((out_dir / receipt_rel).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return True
    return not isinstance(written, dict) or written.get("created_at") != made


def _unsafe(field: Any, out: Any, declared: Any) -> str | None:
    """Why an output of a cache record cannot name a file under ``out/``, or None."""
    if not isinstance(field, str) or not field.isidentifier() or field not in declared:
        return f"output name {field!r} is not an output its stage kind declares"
    if not isinstance(out, dict):
        return f"output {field!r} is not an object"
    if "file" in out:
        ext = out.get("ext", "")
        if not isinstance(ext, str) or len(ext) > 32 or (ext and not ext.startswith(".")):
            return f"output {field!r} has the extension {ext!r}"
        if any(c in ext for c in "/\\\0") or ext in {".", ".."}:
            return f"output {field!r} has the extension {ext!r}"
    return None


def _inside(folder: Path, dest: Path, key: str) -> Path:
    """``dest`` if it is a plain entry of ``folder`` (checked by :func:`_folder`); else the
    error (no write). One ``lstat``: the name is a single part, and a link there is refused
    (a rename would replace the link, but its presence means someone else's files)."""
    if dest.parent != folder or dest.name in {"", ".", ".."} or dest.is_symlink():
        msg = (
            f"refusing to write {str(dest)!r} for the cache record {key[:12]}…: it would land "
            f"outside {str(folder)!r} (a symbolic link?); nothing was written there. Remove "
            "the link and run again"
        )
        raise UsageError(msg)
    return dest


def _folder(out_dir: Path, variant_id: str, key: str, checked: dict[str, Path]) -> Path:
    """``out_dir/<variant>``, created; refused when it, or a folder on the way, is a link.

    ``out/`` itself may be a link (to a bigger disk, say): that is the user's choice. Below
    it, a link could only come from someone else's files, so nothing is written through one.
    ``checked`` remembers the folders of this run already made and checked (each variant has
    several outputs; checking costs a ``mkdir`` and two ``realpath`` walks).
    """
    known = checked.get(variant_id)
    if known is not None:
        return known
    folder = out_dir / variant_id
    base = out_dir.resolve()
    probe = out_dir
    for part in ("", *Path(variant_id).parts):  # out/<recipe> itself, then the variant's
        probe = probe / part
        if probe.is_symlink() or part in {"..", "/"}:
            msg = (
                f"refusing to write the outputs of {key[:12]}… under {str(probe)!r}: it is a "
                f"symbolic link (or leaves {str(out_dir)!r}); remove it and run again"
            )
            raise UsageError(msg)
    folder.mkdir(parents=True, exist_ok=True)
    if not folder.resolve().is_relative_to(base):
        msg = f"refusing to write the outputs of {key[:12]}…: {str(folder)!r} leaves {str(base)!r}"
        raise UsageError(msg)
    checked[variant_id] = folder
    return folder


def materialize(
    *,
    recipe: str,
    out_dir: Path,
    instance: Instance,
    key: str,
    components: dict[str, Any],
    record: dict[str, Any],
    blob_path: Any,
    manifest: Manifest,
    folders: dict[str, Path] | None = None,
) -> list[Path]:
    """Write an output instance's files and receipts for each of its variants.

    Files already written for the same key and untouched since are left alone, so a no-op run
    writes nothing. Every write goes through a temp file and a rename. ``folders``: the
    variant folders this run has made and checked already (kept by the caller between calls).

    Returns:
        The paths written (empty when everything was current).
    """
    written: list[Path] = []
    suffix = f"-{instance.take_label}" if instance.take_label else ""
    base = f"{instance.stage}{suffix}"
    for variant in instance.variants:
        name = entry_name(instance, variant)
        receipt_rel = f"{base}.receipt.json"  # relative to out_dir, as the manifest keeps it
        receipt_rel = f"{variant.id}/{receipt_rel}" if variant.id else receipt_rel
        if manifest.files_current(name, key) and not _receipt_outdated(
            manifest, name, receipt_rel, out_dir, record
        ):
            continue
        outputs = record.get("outputs", {})
        for field, out in outputs.items():
            problem = _unsafe(field, out, instance.impl.outputs)
            if problem is not None:
                msg = (
                    f"the cache record {key[:12]}… ({instance.impl.kind}, {instance.label}) is "
                    f"unsafe: {problem}; nothing was written. Remove it with "
                    f"`motionflow cache forget {key[:12]}`"
                )
                raise CacheError(msg)
        try:
            folder = _folder(out_dir, variant.id, key, {} if folders is None else folders)
            files: dict[str, list[int]] = {}
            # the first output the stage kind declares is the main one: `sheet.mp4`; the others
            # are named by field: `sheet.layout.json`
            main = next((name for name in instance.impl.outputs if name in outputs), None)
            for field, out in outputs.items():
                stem = base if field == main else f"{base}.{field}"
                if "file" in out:
                    dest = _inside(folder, folder / f"{stem}{out.get('ext', '')}", key)
                    atomic_copy(blob_path(out["file"]), dest)
                else:
                    value = out.get("value")
                    text = value if isinstance(value, str) else json.dumps(value, indent=1)
                    dest = folder / f"{stem}{'.txt' if isinstance(value, str) else '.json'}"
                    dest = _inside(folder, dest, key)
                    text += "\n" if not text.endswith("\n") else ""
                    atomic_write_text(dest, text, make_parent=False)
                written.append(dest)
            receipt = _inside(folder, folder / f"{base}.receipt.json", key)
            body = _receipt(recipe, instance, variant, key, components, record)
            body_text = json.dumps(body, indent=1, sort_keys=True) + "\n"
            atomic_write_text(receipt, body_text, make_parent=False)
            written.append(receipt)
            for path in written:
                if path.parent == folder:
                    st = path.stat()
                    files[str(path.relative_to(out_dir))] = [st.st_size, st.st_mtime_ns]
            manifest.record(name, key, components, files)
        except OSError as exc:
            what = f"the outputs of {instance.label}"
            raise out_write_error(out_dir, exc, what, kept=_KEPT) from exc
    return written


_KEPT = (
    " (the results stay in the cache: the next run writes them out without paying or "
    "computing anything again)"
)
