"""Writing results into ``out/<recipe>/<variant>/``, each with a JSON receipt."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from motionflow.graph import Instance
from motionflow.manifest import Manifest, atomic_copy, atomic_write_text, entry_name
from motionflow.recipe.matrix import Variant

__all__ = ["materialize"]


def _version() -> str:
    from motionflow import __version__

    return __version__


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
        "outputs": record.get("outputs", {}),
        "generation": record.get("meta", {}),
        "created_at": record.get("created_at"),
        "motionflow_version": record.get("motionflow_version", _version()),
    }


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
) -> list[Path]:
    """Write an output instance's files and receipts for each of its variants.

    Files already written for the same key and untouched since are left alone, so a no-op run
    writes nothing. Every write goes through a temp file and a rename.

    Returns:
        The paths written (empty when everything was current).
    """
    written: list[Path] = []
    suffix = f"-{instance.take_label}" if instance.take_label else ""
    base = f"{instance.stage}{suffix}"
    for variant in instance.variants:
        name = entry_name(instance, variant)
        if manifest.files_current(name, key):
            continue
        folder = out_dir / variant.id
        folder.mkdir(parents=True, exist_ok=True)
        files: dict[str, list[int]] = {}
        outputs = record.get("outputs", {})
        # the first output the stage kind declares is the main one: `sheet.mp4`; the others
        # are named by field: `sheet.layout.json`
        main = next((name for name in instance.impl.outputs if name in outputs), None)
        for field, out in outputs.items():
            stem = base if field == main else f"{base}.{field}"
            if "file" in out:
                dest = folder / f"{stem}{out.get('ext', '')}"
                atomic_copy(blob_path(out["file"]), dest)
            else:
                value = out.get("value")
                text = value if isinstance(value, str) else json.dumps(value, indent=1)
                dest = folder / f"{stem}{'.txt' if isinstance(value, str) else '.json'}"
                atomic_write_text(dest, text + ("\n" if not text.endswith("\n") else ""))
            written.append(dest)
        receipt = folder / f"{base}.receipt.json"
        body = _receipt(recipe, instance, variant, key, components, record)
        atomic_write_text(receipt, json.dumps(body, indent=1, sort_keys=True) + "\n")
        written.append(receipt)
        for path in written:
            if path.parent == folder:
                st = path.stat()
                files[str(path.relative_to(out_dir))] = [st.st_size, st.st_mtime_ns]
        manifest.record(name, key, components, files)
    return written
