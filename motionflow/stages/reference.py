"""The stage reference (docs/stage-reference.md), generated from the stages' parameter models."""

from __future__ import annotations

import inspect
import json
from typing import Any

from motionflow.stages.registry import get_stage, known_kinds

__all__ = ["render_reference"]

_HEADER = """\
# Stage reference

Generated from the parameter models of the built-in stage kinds by
`python scripts/gen_stage_reference.py`; `tests/test_docs.py` fails when it is out of date.
The same descriptions are in `motionflow schema`. How stages fit together, and how to write
your own kind, is in [stages.md](stages.md).

Every parameter may also be given as a `{{ template }}` or a `${reference}` that renders to
its value. File parameters take a reference: `${inputs.NAME}` or `${stages.NAME.FIELD}`.
"""


def _type(prop: dict[str, Any]) -> str:
    if "anyOf" in prop:
        kinds = [_type(p) for p in prop["anyOf"]]
        return " or ".join(k for k in kinds if k != "null") + (
            " (optional)" if "null" in kinds else ""
        )
    if prop.get("description") == "a reference to a file" or "\\$\\{" in prop.get("pattern", ""):
        return "file"
    if "enum" in prop:
        return " \\| ".join(f"`{v}`" for v in prop["enum"])
    if "const" in prop:
        return f"`{prop['const']}`"
    kind = prop.get("type", "any")
    if kind == "array":
        return f"list of {_type(prop.get('items', {}))}"
    return {"number": "number", "integer": "integer", "string": "string", "boolean": "bool"}.get(
        kind, str(kind)
    )


def _limits(prop: dict[str, Any]) -> str:
    parts = []
    for key, text in (
        ("minimum", ">= {}"),
        ("exclusiveMinimum", "> {}"),
        ("maximum", "<= {}"),
        ("exclusiveMaximum", "< {}"),
        ("minLength", "at least {} characters"),
        ("maxLength", "at most {} characters"),
        ("minItems", "at least {} items"),
    ):
        if key in prop:
            parts.append(text.format(prop[key]))
    for option in prop.get("anyOf", []):
        parts.extend(p for p in [_limits(option)] if p)
    return ", ".join(parts)


def _row(name: str, prop: dict[str, Any], required: bool) -> str:
    inner = prop
    if "anyOf" in prop and len(prop["anyOf"]) == 2 and "pattern" in prop["anyOf"][1]:
        inner = prop["anyOf"][0]  # drop the "or a template" branch; said once at the top
    default = "required" if required else f"`{json.dumps(prop.get('default'))}`"
    description = " ".join(str(prop.get("description", "")).split()).replace("|", "\\|")
    return f"| `{name}` | {_type(inner)} | {default} | {_limits(inner)} | {description} |"


def render_reference() -> str:
    """The whole reference as Markdown: one section per built-in kind, in name order."""
    out = [_HEADER]
    for kind in known_kinds():
        stage = get_stage(kind)
        if not type(stage).__module__.startswith("motionflow."):
            continue  # third-party kinds document themselves
        schema = stage.Params.model_json_schema(by_alias=True)
        defs = schema.get("$defs", {})
        doc = inspect.getdoc(type(stage)) or ""
        out.append(f"## `{kind}`\n\n{doc}\n")
        traits = []
        if stage.paid:
            traits.append("paid (priced in `plan`, counted against the budget)")
        if stage.static:
            traits.append("static (its outputs are known while planning)")
        if stage.takes_allowed:
            traits.append("accepts `takes:`")
        if traits:
            out.append("Traits: " + "; ".join(traits) + ".\n")
        out.append("| parameter | type | default | limits | description |")
        out.append("|---|---|---|---|---|")
        required = set(schema.get("required", []))
        for name, raw in schema.get("properties", {}).items():
            prop = {**defs.get(raw["$ref"].split("/")[-1], {}), **raw} if "$ref" in raw else raw
            out.append(_row(name, prop, name in required))
        outputs = ", ".join(f"`{name}` ({what})" for name, what in stage.outputs.items())
        out.append(f"\nOutputs: {outputs}.\n")
    return "\n".join(out).rstrip() + "\n"
