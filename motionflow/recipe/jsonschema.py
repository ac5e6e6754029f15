"""The JSON Schema of recipes, with each stage kind's parameters, for editors."""

from __future__ import annotations

from typing import Any

from motionflow.recipe.schema import RecipeModel
from motionflow.stages.registry import get_stage, known_kinds

__all__ = ["recipe_json_schema"]


_TEMPLATED = {
    "type": "string",
    "pattern": r"(\{\{|\{%|\$\{)",
    "description": "a {{ template }} or ${reference} that renders to the value",
}


def _allow_templates(params: dict[str, Any]) -> None:
    """Any parameter may be given as a template or reference that renders to its value."""
    for name, prop in params.get("properties", {}).items():
        if prop.get("type") != "string" or "enum" in prop:
            params["properties"][name] = {
                "anyOf": [prop, _TEMPLATED],
                **{k: prop[k] for k in ("description", "default", "title") if k in prop},
            }


def recipe_json_schema() -> dict[str, Any]:
    """``RecipeModel``'s schema where ``with:`` follows the parameters of the kind in ``uses:``."""
    schema = RecipeModel.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "motionflow recipe"
    spec = schema["$defs"]["StageSpec"]
    kinds = known_kinds()
    spec["properties"]["uses"]["examples"] = kinds
    branches: list[dict[str, Any]] = []
    for kind in kinds:
        params = get_stage(kind).Params.model_json_schema(by_alias=True)
        _allow_templates(params)
        defs = params.pop("$defs", {})
        schema["$defs"].update(defs)
        name = "Params_" + kind.replace(".", "_")
        schema["$defs"][name] = params
        branches.append(
            {
                "if": {"properties": {"uses": {"const": kind}}, "required": ["uses"]},
                "then": {"properties": {"with": {"$ref": f"#/$defs/{name}"}}},
            }
        )
    spec["allOf"] = branches
    return schema
