"""The recipe language: YAML with positions, the schema, matrix, references and templating."""

from motionflow.recipe.loader import Recipe, load_recipe, parse_var

__all__ = ["Recipe", "load_recipe", "parse_var"]
