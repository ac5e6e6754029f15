"""``motionflow init``: a new project with a commented recipe and the sample media."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from motionflow.errors import UsageError

__all__ = ["init_project"]

_README = """\
# {name}

A [motionflow](https://pypi.org/project/motionflow/) project.

## Run it for free

```console
motionflow plan recipe.yaml   # what would run, why, and what it would cost
motionflow run recipe.yaml    # offline, on the simulate provider: labelled stand-in videos
```

Results land in `out/{name}/<variant>/`, each with a JSON receipt; `out/{name}/sheet.mp4`
shows every variant side by side. Run it again and nothing is re-made.

## Run it for real

Set `provider: empiriolabs` in `recipe.yaml`, export `EMPIRIOLABS_API_KEY`, and configure a
publisher so the service can fetch your media (see the motionflow docs). Check the price with
`motionflow plan recipe.yaml` first; `budget: {{max_usd: ...}}` caps what a run may spend.
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
