"""The JSON Schema of recipes, with each stage kind's parameters, for editors."""

from __future__ import annotations

from typing import Any

from motionflow.recipe.schema import RecipeModel
from motionflow.stages.registry import get_stage, known_kinds

__all__ = ["recipe_json_schema"]


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
