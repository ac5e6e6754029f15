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
GOLDEN_MEDIA = REPO / "tests" / "golden" / "golden_media.yaml"

# (stage, variant, take) -> key. Changing any of these must be deliberate: bump KEY_VERSION
# (every key) or a stage kind's version (that kind's keys) and say so in CHANGELOG.md; a
# changed generation key makes every cached generation a paid miss.
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


# The ffmpeg stages of golden_media.yaml. Their keys changed once, deliberately, when ffmpeg's
# version left them (kind versions 1 -> 2; CHANGELOG.md): they re-run once, for free. The
# keys they had before, on the machine that pinned them: still fa0b1c95..., clip b757a965...
# (those held this machine's ffmpeg build, so no other machine could reproduce them).
GOLDEN_MEDIA_KEYS = {
    "still": "29a40c9c1b3d59b225f984c56e531946fd7f5943fde3e210f2261237c31024ab",
    "clip": "6f10602dd4e1c44585ec135cc87f4ea4ebbc8021085ca8a2cfa8925915ff467e",
}
# The generation of golden_media.yaml when its prepared image and clip are the sample assets'
# bytes: the same key before and after the prepare kinds' bump (it is keyed by the prepared
# media's content digests, never by the prepare stages' keys).
GOLDEN_MEDIA_TAKE_KEY = "d26c435146d4b50b123521bf81a887755f2c7f279d839f38157d9af2c38d52ce"

# Every ffmpeg stage kind's version: bumped together when ffmpeg's version left their keys.
MEDIA_KIND_VERSIONS = {
    "video.prepare": "2",
    "image.prepare": "2",
    "media.check": "2",
    "video.transcode": "2",
    "video.thumbnail": "2",
    "video.gif": "2",
    "video.concat": "2",
    "video.audio": "2",
    "video.compare": "3",
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


def _seed_prepared(cache: Cache, key: str, kind: str, field: str, source: Path) -> None:
    """Store a prepare stage's result under ``key`` whose bytes are ``source``'s."""
    digest, size = cache.store_file(source)
    outputs = {field: {"file": digest, "size": size, "ext": source.suffix}, "info": {"value": {}}}
    record = {"stage_kind": kind, "outputs": outputs, "meta": {}, "created_at": "2026-01-01"}
    cache.put_result(key, record)


def test_media_stage_keys_hold_no_tool_version_and_are_pinned(tmp_path: Path) -> None:
    """The ffmpeg stages' keys are the same on every machine: no ffmpeg build in them."""
    plan = make_plan(load_recipe(GOLDEN_MEDIA), Cache(tmp_path / "cache"))
    items = {p.instance.stage: p for p in plan.items}
    assert {s: str(items[s].key) for s in ("still", "clip")} == GOLDEN_MEDIA_KEYS
    for stage in ("still", "clip"):
        components = items[stage].components or {}
        assert components["env"] == {}, components  # recorded as tools instead
        assert components["kind_version"] == "2"
        assert items[stage].tools and items[stage].tools["ffmpeg"].startswith("ffmpeg version")
    assert items["take"].key is None  # it waits for the prepared media's bytes


def test_generation_key_did_not_change_with_the_media_kinds_bump(tmp_path: Path) -> None:
    """The generation reads the prepared files' content digests: same bytes, same key, same
    paid result, whatever the prepare stage's own key is."""
    cache = Cache(tmp_path / "cache")
    first = {p.instance.stage: p for p in make_plan(load_recipe(GOLDEN_MEDIA), cache).items}
    assets = REPO / "recipes" / "assets"
    _seed_prepared(cache, str(first["still"].key), "image.prepare", "image", assets / "hero.png")
    _seed_prepared(cache, str(first["clip"].key), "video.prepare", "video", assets / "dance.mp4")
    items = {p.instance.stage: p for p in make_plan(load_recipe(GOLDEN_MEDIA), cache).items}
    assert (items["still"].status, items["clip"].status) == ("cached", "cached")
    assert items["take"].key == GOLDEN_MEDIA_TAKE_KEY
    assert (items["take"].components or {})["kind_version"] == "1"
    # and the golden recipe's generations (no media stage) are pinned as they always were
    assert plan_keys(GOLDEN, tmp_path / "cache2") == GOLDEN_KEYS


def test_every_ffmpeg_stage_kind_was_bumped_and_keys_no_tool() -> None:
    from motionflow.stages.media_base import MediaStage
    from motionflow.stages.registry import get_stage, known_kinds

    kinds = {name: get_stage(name) for name in known_kinds()}
    media = {name: s.version for name, s in kinds.items() if isinstance(s, MediaStage)}
    assert media == MEDIA_KIND_VERSIONS
    assert kinds["kling.motion_control"].version == "1"
    for name in media:
        stage = kinds[name]
        assert isinstance(stage, MediaStage)
        env = stage.environment(stage.Params.model_construct(), "simulate")
        assert "ffmpeg" not in env, name
        assert set(stage.tools(stage.Params.model_construct())) == {"ffmpeg"}, name
