"""Keys: canonical, content-only, and pinned by a golden recipe (a key change costs users money)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import REPO

from motionflow.cache.store import Cache
from motionflow.keys import KEY_VERSION, canonical_json, digest_file, instance_key
from motionflow.plan import make_plan
from motionflow.recipe.loader import load_recipe

GOLDEN = REPO / "tests" / "golden" / "golden.yaml"

# (stage, variant, take) -> key. Changing any of these must be deliberate: bump KEY_VERSION
# and say so in CHANGELOG.md, because every cached generation becomes a paid miss.
GOLDEN_KEYS = {
    (
        "prompt",
        "red-bomber-jacket_std",
        None,
    ): "c7c72706ccada819cf986cd8039760424119326bd46a9057b7f0081aaa8ccfd2",
    (
        "take",
        "red-bomber-jacket_std",
        1,
    ): "4ce5b8d9492ddccd026aa245a86dc37ca117efea5dce995f56c84637696f4883",
    (
        "take",
        "red-bomber-jacket_std",
        2,
    ): "3c10e126072dc907f383137750c9f039d3aa07a5023b3a4b8d8c791bbf2669df",
    (
        "take",
        "red-bomber-jacket_pro",
        1,
    ): "7a3aac15621f0fd61414a9c7b95b65a6161d2064caf8173c5d705a3f96949ca4",
    (
        "take",
        "red-bomber-jacket_pro",
        2,
    ): "caecb9cfa1a1f40d0893eec55b1813e05bbce33fc1234957d02ccfe35bd152c5",
    (
        "prompt",
        "white-hoodie_std",
        None,
    ): "02cf4511bbb4339286d02c794bfc95a1f4f0b9e96c4abb3bb488e2fbb88b0482",
    (
        "take",
        "white-hoodie_std",
        1,
    ): "2fb859f32224ec1451a89032c6e4c5ac112cf73723438ea7445e33429741cce8",
    (
        "take",
        "white-hoodie_std",
        2,
    ): "25076707a6bae0364e52d1fbdc28f114547cc0f26eb81352395e1db1d79e45a2",
}


def plan_keys(
    recipe: Path, cache: Path, **kwargs: object
) -> dict[tuple[str, str, int | None], str]:
    plan = make_plan(load_recipe(recipe, **kwargs), Cache(cache))  # type: ignore[arg-type]
    return {
        (p.instance.stage, p.instance.variants[0].id, p.instance.take_label): str(p.key)
        for p in plan.items
    }


def test_key_version_is_one() -> None:
    assert KEY_VERSION == 1


def test_golden_recipe_keys_are_pinned(tmp_path: Path) -> None:
    assert digest_file(REPO / "recipes/assets/hero.png").startswith("blake3:5990b002")
    assert plan_keys(GOLDEN, tmp_path / "cache") == GOLDEN_KEYS


def test_keys_hold_no_paths_or_variant_names(tmp_path: Path) -> None:
    """The same recipe and media in another folder, under another name, has the same keys."""
    other = tmp_path / "elsewhere" / "deeper"
    (other / "media").mkdir(parents=True)
    (other / "motionflow.toml").write_text("")
    shutil.copy(REPO / "recipes/assets/hero.png", other / "media" / "character.png")
    shutil.copy(REPO / "recipes/assets/dance.mp4", other / "media" / "motion.mp4")
    text = GOLDEN.read_text().replace("../../recipes/assets/hero.png", "media/character.png")
    text = text.replace("../../recipes/assets/dance.mp4", "media/motion.mp4")
    text = text.replace("name: golden", "name: renamed")
    (other / "copy.yaml").write_text(text)
    assert set(plan_keys(other / "copy.yaml", tmp_path / "cache").values()) == set(
        GOLDEN_KEYS.values()
    )


def test_rendered_prompt_not_template_is_keyed(tmp_path: Path) -> None:
    """A template refactor that renders the same text keeps every key (costs $0)."""
    text = GOLDEN.read_text().replace(
        '"The character wears a {{ outfit }}, {{ style }}."',
        '"The character wears a {{ outfit | lower }}, {% if true %}{{ style }}{% endif %}."',
    )
    path = GOLDEN.parent / "_refactored.yaml"
    try:
        path.write_text(text)
        assert plan_keys(path, tmp_path / "cache") == GOLDEN_KEYS
    finally:
        path.unlink()


def test_provider_identity_is_in_the_key() -> None:
    base = {"kind": "k", "kind_version": "1", "params": {}, "take": 0}
    simulated = instance_key({**base, "env": {"provider": "simulate"}})
    paid = instance_key({**base, "env": {"provider": "empiriolabs"}})
    assert simulated != paid


def test_canonical_json_is_order_free_and_refuses_nan() -> None:
    assert canonical_json({"b": 1, "a": [1, "é"]}) == canonical_json({"a": [1, "é"], "b": 1})
    assert canonical_json({"a": "é"}) == '{"a":"\\u00e9"}'
    with pytest.raises(ValueError, match="Out of range float"):
        canonical_json({"x": float("nan")})
