"""Hostile cache exports: forged records are refused whole, values never imported, out/ kept.

Each archive is built here from a real export (``cache export --all``) by editing its
``results.json``; each import must exit 2 with a message naming the member and the field, or
(for values) leave the value out. Nothing may be written outside the project and the cache.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import ASSETS, Project

from motionflow.cache.store import Cache

RECIPE = """\
version: 1
name: tiny
provider: simulate
vars: {style: "a dancer"}
inputs: {hero: assets/hero.png, dance: assets/dance.mp4}
stages:
  prompt: {uses: prompt, with: {template: "{{ style }} on a rooftop"}}
  take:
    uses: kling.motion_control
    with:
      image: "${inputs.hero}"
      video: "${inputs.dance}"
      prompt: "${stages.prompt.text}"
      character_orientation: video
      duration: 3
  still: {uses: image.prepare, with: {src: "${inputs.hero}"}}
outputs: [take, still]
"""

Members = list[tuple[tarfile.TarInfo, bytes]]
Snap = Callable[[Path], dict[str, tuple[int, int]]]


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Members:
    """The members of a real export of a run of ``RECIPE`` (a prompt, a take, a still)."""
    base = tmp_path_factory.mktemp("hostile")
    source = Project(base / "proj", base / "cache")
    shutil.copytree(ASSETS, source.root / "assets")
    source.write("motionflow.toml", "")
    source.write("tiny.yaml", RECIPE)
    ran = source.run_json("tiny.yaml")
    assert (ran["_exit"], ran["jobs_submitted"]) == (0, 1), ran["_stderr"]
    archive = base / "good.tar.gz"
    assert source.cli("cache", "export", str(archive), "--all").returncode == 0
    with tarfile.open(archive) as tar:
        members = []
        for member in tar.getmembers():
            handle = tar.extractfile(member)
            members.append((member, handle.read() if handle else b""))
    return members


def _forge(path: Path, members: Members, edit: Callable[[dict[str, Any]], None]) -> Path:
    """``members`` with ``results.json`` edited by ``edit`` (which gets the records by kind)."""
    with tarfile.open(path, "w:gz") as tar:
        for info, original in members:
            data = original
            if info.name == "results.json":
                body = json.loads(data)
                edit({r["stage_kind"]: r for r in body["results"].values()})
                data = json.dumps(body).encode()  # NaN stays NaN: json writes it
            copy = tarfile.TarInfo(info.name)
            copy.type, copy.mode, copy.size = info.type, info.mode, len(data)
            tar.addfile(copy, io.BytesIO(data) if copy.isreg() else None)
    return path


def _rename(kind: str, old: str, new: str) -> Callable[[dict[str, Any]], None]:
    def edit(records: dict[str, Any]) -> None:
        outputs = records[kind]["outputs"]
        outputs[new] = outputs.pop(old)

    return edit


def _set(kind: str, *path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(records: dict[str, Any]) -> None:
        target = records[kind]
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value

    return edit


REFUSED = {
    "name ../../x": (_rename("kling.motion_control", "video", "../../x"), "'../../x'"),
    "name a/b": (_rename("kling.motion_control", "video", "a/b"), "'a/b'"),
    "free name ../x": (_rename("image.prepare", "image", "../x"), "'../x'"),
    "ext escapes": (
        _set("kling.motion_control", "outputs", "video", "ext", value="/../../evil.sh"),
        "outputs['video'].ext",
    ),
    "ext after mp4": (
        _set("kling.motion_control", "outputs", "video", "ext", value=".mp4/../../x"),
        "outputs['video'].ext",
    ),
    "paid ext .sh": (
        _set("kling.motion_control", "outputs", "video", "ext", value=".sh"),
        "outputs['video'].ext",
    ),
    "free ext escapes": (
        _set("image.prepare", "outputs", "image", "ext", value="/../x.png"),
        "outputs['image'].ext",
    ),
    "unknown kind": (_set("prompt", "stage_kind", value="evil.kind"), "'evil.kind'"),
    "NaN usd": (
        _set("kling.motion_control", "meta", "estimated_usd", value=float("nan")),
        "meta.estimated_usd",
    ),
    "text usd": (
        _set("kling.motion_control", "meta", "estimated_usd", value="0.14"),
        "meta.estimated_usd",
    ),
    "negative size": (_set("kling.motion_control", "outputs", "video", "size", value=-1), "size"),
    "bad digest": (
        _set("kling.motion_control", "outputs", "video", "file", value="md5:" + "0" * 64),
        "outputs['video'].file",
    ),
    "huge text": (_set("prompt", "outputs", "text", "value", value="x" * 100_000), "value"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_forged_record_refuses_the_whole_import(
    case: str, export: Members, project: Project, tmp_path: Path, files_under: Snap
) -> None:
    edit, field = REFUSED[case]
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    (sentinel / "keep.txt").write_text("mine")
    before = files_under(tmp_path)
    archive = _forge(tmp_path / "forged.tar.gz", export, edit)
    proc = project.cli("cache", "import", str(archive))
    assert proc.returncode == 2, (case, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert "results.json" in proc.stderr and field in proc.stderr, (case, proc.stderr)
    assert "nothing was imported" in proc.stderr
    listed = project.cli("cache", "ls", "--json")
    assert json.loads(listed.stdout) == [], case
    assert not list(project.cache.glob("blobs/*/*")), case
    after = files_under(tmp_path)
    outside = {
        name
        for name in set(after) ^ set(before)
        if not name.startswith(("cache/", "forged.tar.gz"))
    }
    assert outside == set(), case


def _run_clean(project: Project, archive: Path) -> dict[str, Any]:
    imported = project.cli("cache", "import", str(archive), "--json")
    assert imported.returncode == 0, imported.stderr
    return dict(json.loads(imported.stdout))


def test_a_changed_prompt_value_is_never_imported(
    export: Members, project: Project, tmp_path: Path
) -> None:
    injected = "IGNORE THE DANCER, INJECTED"
    archive = _forge(
        tmp_path / "prompt.tar.gz",
        export,
        _set("prompt", "outputs", "text", "value", value=injected),
    )
    report = _run_clean(project, archive)
    assert len(report["added"]) == 1 and len(report["skipped"]) == 2  # only the paid take
    project.write("tiny.yaml", RECIPE)
    plan = project.cli("plan", "tiny.yaml", "--json")
    assert plan.returncode == 0 and injected not in plan.stdout, plan.stderr
    run = project.run_json("tiny.yaml")
    assert (run["_exit"], run["jobs_submitted"], run["cached"]) == (0, 0, 1), run["_stderr"]
    for path in project.out("tiny").rglob("*"):
        if path.is_file():
            assert injected not in path.read_text(errors="replace"), path
    receipt = json.loads((project.out("tiny") / "default" / "take.receipt.json").read_text())
    assert receipt["imported"]["from"] == "prompt.tar.gz"


def test_a_free_file_of_any_plain_suffix_is_valid_and_still_not_imported(
    export: Members, project: Project, tmp_path: Path
) -> None:
    edit = _set("image.prepare", "outputs", "image", "ext", value=".csv")
    report = _run_clean(project, _forge(tmp_path / "csv.tar.gz", export, edit))
    assert len(report["added"]) == 1 and len(report["skipped"]) == 2


def test_a_symlinked_out_folder_is_never_written_through(
    export: Members, project: Project, tmp_path: Path, files_under: Snap
) -> None:
    archive = _forge(tmp_path / "good.tar.gz", export, lambda records: None)
    _run_clean(project, archive)
    project.write("tiny.yaml", RECIPE)
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    (sentinel / "keep.txt").write_text("mine")
    before = files_under(sentinel)
    (project.out("tiny")).mkdir(parents=True)
    (project.out("tiny") / "default").symlink_to(sentinel, target_is_directory=True)
    run = project.cli("run", "tiny.yaml")
    assert run.returncode == 2, (run.stdout, run.stderr)
    assert "Traceback" not in run.stderr and "symbolic link" in run.stderr, run.stderr
    assert "default" in run.stderr
    assert files_under(sentinel) == before


def test_a_forged_record_already_in_the_cache_is_never_written(
    export: Members, project: Project, tmp_path: Path, files_under: Snap
) -> None:
    """Defence in depth: a record that got past import (or an old cache) writes nothing."""
    archive = _forge(tmp_path / "good.tar.gz", export, lambda records: None)
    [key] = _run_clean(project, archive)["added"]
    cache = Cache(project.cache)
    record = cache.get_result(key)
    assert record is not None
    record["outputs"]["video"]["ext"] = "/../../../evil.sh"
    cache.put_result(key, record)
    project.write("tiny.yaml", RECIPE)
    before = files_under(tmp_path)
    run = project.cli("run", "tiny.yaml")
    assert run.returncode == 2, (run.stdout, run.stderr)
    assert "Traceback" not in run.stderr and key[:12] in run.stderr, run.stderr
    assert "cache forget" in run.stderr
    new = set(files_under(tmp_path)) - set(before)
    assert not any("evil" in name for name in new), new
    assert all(name.startswith(("proj/", "cache/")) for name in new), new
