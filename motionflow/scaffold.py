"""``motionflow init``: a new project with a commented recipe and the sample media."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from motionflow.errors import UsageError

__all__ = ["init_project"]

_README = """\
# {name}

A motionflow project: `recipe.yaml` makes a character (`assets/hero.png`) perform the motion of
a reference clip (`assets/dance.mp4`), once per outfit in its matrix.

## Run it for free

```console
motionflow plan recipe.yaml   # what would run, why, and what it would cost
motionflow run recipe.yaml    # offline, on the simulate provider: labelled stand-in videos
```

Results land in `out/{name}/<variant>/`, each with a JSON receipt; `out/{name}/sheet.mp4`
shows every variant side by side. Run it again and nothing is re-made.

## Run it for real

1. Set `provider: empiriolabs` in `recipe.yaml` and `export EMPIRIOLABS_API_KEY=...`.
2. Make your media fetchable: the service downloads the image and the clip from URLs, so add
   a publisher to `recipe.yaml`, e.g. a folder your web server serves:
   `publish: {{kind: static, dir: /srv/www/mf, base_url: https://media.example.com/mf}}`,
   or a bucket: `publish: {{kind: s3, bucket: my-bucket}}` (`pip install "motionflow[s3]"`).
3. Check the price with `motionflow plan recipe.yaml`; `budget: {{max_usd: ...}}` caps what a
   run may spend, and `motionflow run` asks before spending when no limit is stated.

## Help

- `motionflow --help` and `motionflow COMMAND --help`: every command and option.
- `motionflow schema -o recipe.schema.json`: the recipe's JSON Schema, for editor completion.
- `motionflow validate recipe.yaml`: every problem in the recipe at once, at `file:line:column`.
- The motionflow source repository's `docs/` folder: `docs/recipes.md` (the recipe language),
  `docs/stage-reference.md` (every stage's parameters), `docs/publishers.md` (making media
  fetchable), `docs/generation.md` (paid generation) and `docs/cli.md` (commands).
"""


async def init_project(dest: Path) -> list[Path]:
    """Create a project in ``dest`` (which must not hold any of the files it writes).

    Returns:
        The files written.

    Raises:
        UsageError: ``dest`` is a file, or one of the files already exists.
    """
    if dest.exists() and not dest.is_dir():
        msg = f"{str(dest)!r} is a file; give motionflow init a folder (new or empty)"
        raise UsageError(msg)
    name = _name(dest)
    planned = [dest / n for n in ("recipe.yaml", "README.md", ".gitignore", "motionflow.toml")]
    planned += [dest / "assets" / "hero.png", dest / "assets" / "dance.mp4"]
    clash = [str(p) for p in planned if p.exists()]
    if clash:
        msg = (
            f"motionflow init would overwrite {', '.join(clash)}; choose an empty folder or "
            "move those files away"
        )
        raise UsageError(msg)
    template = resources.files("motionflow").joinpath("templates/recipe.yaml").read_text("utf-8")
    try:
        (dest / "assets").mkdir(parents=True, exist_ok=True)
        (dest / "recipe.yaml").write_text(template.replace("name: NAME", f"name: {name}"), "utf-8")
        (dest / "README.md").write_text(_README.format(name=name), "utf-8")
        (dest / ".gitignore").write_text("out/\n", "utf-8")
        (dest / "motionflow.toml").write_text(
            "# Marks the motionflow project folder: out/ goes here and recipe paths stay inside.\n",
            "utf-8",
        )
    except OSError as exc:
        msg = f"motionflow init cannot write into {str(dest)!r}: {exc}; choose a writable folder"
        raise UsageError(msg) from exc
    from motionflow.media.samples import make_sample_assets

    await make_sample_assets(dest / "assets")
    return planned


def _name(dest: Path) -> str:
    import re

    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", dest.resolve().name).strip("-.") or "project"
    return slug[:64]
