"""``motionflow cache ls|du|verify|gc|forget|export|import`` on a real (simulated) cache."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path
from typing import Any

import pytest
from conftest import ASSETS, TINY_RECIPE, Project

RECIPE = TINY_RECIPE


def _json(project: Project, *args: str) -> Any:
    proc = project.cli("cache", *args, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _entries(project: Project) -> dict[str, dict[str, Any]]:
    return {e["stage_kind"] + ("" if e["referenced"] else "-old"): e for e in _json(project, "ls")}


def _keys(project: Project) -> dict[str, str]:
    return {name: e["key"] for name, e in _entries(project).items()}


def _blob(project: Project, digest: str) -> Path:
    hexd = digest.removeprefix("blake3:")
    return project.cache / "blobs" / hexd[:2] / hexd[2:]


def _corrupt(path: Path) -> None:
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _clean(proc: Any) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    return str(proc.stdout + proc.stderr)


@pytest.fixture(scope="module")
def ran_once(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """A project whose recipe ran once: a prompt, a paid take and a prepared image."""
    base = tmp_path_factory.mktemp("ran")
    project = Project(base / "proj", base / "cache")
    shutil.copytree(ASSETS, project.root / "assets")
    project.write("motionflow.toml", "")
    project.write("tiny.yaml", RECIPE)
    first = project.run_json("tiny.yaml")
    assert (first["_exit"], first["jobs_submitted"]) == (0, 1), first["_stderr"]
    return project


@pytest.fixture
def done(project: Project, ran_once: Project) -> Project:
    """A private copy of ``ran_once`` (running the recipe once per test would be slow)."""
    shutil.copytree(ran_once.root, project.root, dirs_exist_ok=True)
    shutil.copytree(ran_once.cache, project.cache)
    return project


@pytest.mark.slow
def test_ls_and_du_show_kind_size_age_cost_and_use(done: Project) -> None:
    entries = _entries(done)
    assert set(entries) == {"prompt", "kling.motion_control", "image.prepare"}
    take = entries["kling.motion_control"]
    # a generation, so kept like a paid result; but simulated, so it cost (and is worth) $0
    assert take["paid"] and take["estimated_usd"] == 0 and take["job_id"]
    assert take["size"] > 10_000 and take["state"] == "ok" and take["age_seconds"] < 600
    assert not entries["prompt"]["paid"] and entries["prompt"]["estimated_usd"] == 0
    usage = _json(done, "du")
    assert usage["paid_results"] == 1 and usage["results"] == 3
    assert usage["paid_bytes"] == take["size"] and usage["paid_usd"] == 0
    text = _clean(done.cli("cache", "ls"))
    assert take["key"][:12] in text and f"${take['estimated_usd']:.2f}" in text
    assert "paid results" in _clean(done.cli("cache", "du"))


@pytest.mark.slow
def test_a_corrupt_paid_blob_is_quarantined_and_never_silently_regenerated(
    done: Project,
) -> None:
    take = _entries(done)["kling.motion_control"]
    [digest] = take["files"]
    _corrupt(_blob(done, digest))
    verify = done.cli("cache", "verify")
    assert verify.returncode == 1 and "corrupt" in _clean(verify)
    assert not _blob(done, digest).exists()
    assert (done.cache / "quarantine" / digest.removeprefix("blake3:")).is_file()
    assert _entries(done)["kling.motion_control"]["state"] == "corrupt"
    jobs_before = sorted((done.cache / "journal").rglob("*.json"))
    for command in ("plan", "run"):
        refused = done.cli(command, "tiny.yaml")
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "cache import" in _clean(refused) and "cache forget" in refused.stderr
    assert sorted((done.cache / "journal").rglob("*.json")) == jobs_before  # nothing submitted
    # the explicit way out: forget the key, and the next run pays (here: simulates) again
    forgot = done.cli("cache", "forget", take["key"][:12])
    assert forgot.returncode == 0 and "makes it again" in _clean(forgot)  # simulated: $0
    again = done.run_json("tiny.yaml")
    assert (again["_exit"], again["jobs_submitted"]) == (0, 1), again["_stderr"]
    assert done.cli("cache", "verify").returncode == 0


@pytest.mark.slow
def test_a_corrupt_free_blob_is_dropped_and_recomputed_for_free(done: Project) -> None:
    receipt = json.loads((done.out("tiny") / "default" / "still.receipt.json").read_text())
    _corrupt(_blob(done, receipt["outputs"]["image"]["file"]))
    report = done.cli("cache", "verify", "--json")
    assert report.returncode == 1
    found = json.loads(report.stdout)
    assert [c["paid"] for c in found["corrupt"]] == [False] and found["dropped"] == [receipt["key"]]
    again = done.run_json("tiny.yaml")
    assert (again["_exit"], again["executed"], again["jobs_submitted"]) == (0, 1, 0)
    assert json.loads(done.cli("cache", "verify", "--json").stdout)["ok"]


@pytest.mark.slow
def test_gc_drops_unreferenced_intermediates_and_keeps_paid_unless_asked(done: Project) -> None:
    # a new prompt: the old prompt and the old (paid) take are no longer referenced
    changed = done.run_json("tiny.yaml", "--var", "style=a robot")
    assert changed["jobs_submitted"] == 1
    before = _entries(done)
    keys = {name: e["key"] for name, e in before.items()}
    old_take = before["kling.motion_control-old"]
    dry = _json(done, "gc", "--dry-run")
    assert [r["key"] for r in dry["removed"]] == [before["prompt-old"]["key"]]
    assert dry["kept_paid"] == 1 and dry["kept_paid_usd"] == old_take["estimated_usd"]
    assert dry["usd_at_risk"] == 0 and _keys(done) == keys  # a dry run changes nothing
    risky = done.cli("cache", "gc", "--dry-run", "--include-paid")
    assert f"${old_take['estimated_usd']:.2f}" in _clean(risky) and "would remove" in risky.stdout
    assert _keys(done) == keys

    _json(done, "gc")
    after = _entries(done)
    assert "prompt-old" not in after and "kling.motion_control-old" in after
    paid = _json(done, "gc", "--include-paid")
    assert paid["usd_at_risk"] == old_take["estimated_usd"]
    assert paid["blobs"] == old_take["files"]
    assert set(_entries(done)) == {"prompt", "kling.motion_control", "image.prepare"}
    rerun = done.run_json("tiny.yaml", "--var", "style=a robot")
    assert (rerun["executed"], rerun["jobs_submitted"], rerun["_exit"]) == (0, 0, 0)


@pytest.mark.slow
def test_gc_quota_and_other_projects_never_touch_paid_results(
    done: Project, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # seen from another project, nothing is referenced: the free results go, the paid stays
    gone = _json(done, "gc", "--project", str(elsewhere))
    assert sorted(r["stage_kind"] for r in gone["removed"]) == ["image.prepare", "prompt"]
    assert set(_entries(done)) == {"kling.motion_control"}
    rerun = done.run_json("tiny.yaml", "--recheck")
    assert (rerun["executed"], rerun["jobs_submitted"]) == (2, 0)
    quota = _json(done, "gc", "--max-intermediates", "0")
    assert {r["stage_kind"] for r in quota["removed"]} == {"image.prepare", "prompt"}
    assert "kling.motion_control" in _entries(done)
    bad = done.cli("cache", "gc", "--max-intermediates", "lots")
    assert bad.returncode == 2 and "not a size" in _clean(bad)


@pytest.mark.slow
def test_export_import_lets_a_teammate_reuse_paid_generations(
    done: Project, tmp_path: Path
) -> None:
    archive = tmp_path / "share" / "tiny.tar.gz"
    wrote = done.cli("cache", "export", str(archive), "--recipe", "tiny")
    assert wrote.returncode == 0 and "3 results" in _clean(wrote)
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert "results.json" in names and sum(n.startswith("receipts/") for n in names) == 3

    mate = Project(tmp_path / "mate", tmp_path / "mate-cache")
    shutil.copytree(done.root / "assets", mate.root / "assets")
    mate.write("motionflow.toml", "")
    mate.write("tiny.yaml", RECIPE)
    imported = _json(mate, "import", str(archive))
    # only the paid result is imported (docs/cache.md, trust model); the free ones recompute
    assert len(imported["added"]) == 1 and imported["paid_usd"] == 0  # simulated: free
    assert sorted(why for _, why in imported["skipped"]) == 2 * [
        "not a paid result: recomputed locally, for free"
    ]
    run = mate.run_json("tiny.yaml")
    assert (run["_exit"], run["executed"], run["jobs_submitted"], run["cached"]) == (0, 2, 0, 1)
    receipt = json.loads((mate.out("tiny") / "default" / "take.receipt.json").read_text())
    assert receipt["generation"]["job_id"] == _entries(done)["kling.motion_control"]["job_id"]
    assert receipt["imported"]["from"] == receipt["generation"]["imported_from"] == "tiny.tar.gz"
    again = _json(mate, "import", str(archive))  # existing records are never overwritten
    assert (again["added"], len(again["present"])) == ([], 1)


def _read(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = tar.extractfile(member)
    assert handle is not None
    return handle.read()


def _tarball(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


@pytest.mark.slow
def test_import_refuses_bad_archives_and_writes_nothing(done: Project, tmp_path: Path) -> None:
    good = tmp_path / "good.tar.gz"
    assert done.cli("cache", "export", str(good), "--all").returncode == 0
    with tarfile.open(good) as tar:
        members = [(m, _read(tar, m)) for m in tar.getmembers()]
    blob_at = next(i for i, (m, _) in enumerate(members) if m.name.startswith("blobs/"))
    tampered = list(members)
    tampered[blob_at] = (members[blob_at][0], members[blob_at][1][:-1] + b"!")
    link = tarfile.TarInfo("blobs/" + "0" * 64)
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    bad = {
        "missing": tmp_path / "nope.tar.gz",
        "truncated": tmp_path / "cut.tar.gz",
        "tampered": _tarball(tmp_path / "tampered.tar.gz", tampered),
        "traversal": _tarball(tmp_path / "up.tar.gz", [(tarfile.TarInfo("../evil"), b"x")]),
        "absolute": _tarball(tmp_path / "abs.tar.gz", [(tarfile.TarInfo("/tmp/evil"), b"x")]),
        "symlink": _tarball(tmp_path / "link.tar.gz", [*members, (link, b"")]),
        "no results": _tarball(tmp_path / "empty.tar.gz", members[1:]),
    }
    bad["truncated"].write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    fresh = Project(tmp_path / "mate", tmp_path / "mate-cache")
    fresh.root.mkdir()
    for what, path in bad.items():
        proc = fresh.cli("cache", "import", str(path))
        assert proc.returncode == 2, (what, proc.stdout, proc.stderr)
        assert "error:" in _clean(proc) and "Traceback" not in proc.stderr, what
        assert _json(fresh, "ls") == [], what
        assert not list(fresh.cache.glob("blobs/*/*")), what
    assert not (tmp_path / "evil").exists()
    assert "does not match its digest" in fresh.cli("cache", "import", str(bad["tampered"])).stderr


def test_export_usage_errors_exit_2(done: Project, tmp_path: Path) -> None:
    cases = {
        ("export", str(tmp_path / "x.tar.gz"), "--key", "deadbeefdeadbeef"): "matches no result",
        ("export", str(tmp_path / "x.tar.gz")): "choose what to export",
        ("export", str(tmp_path / "x.tar.gz"), "--recipe", "other"): "no results recorded",
        ("forget", "abc"): "shorter than 8",
    }
    for args, message in cases.items():
        proc = done.cli("cache", *args)
        assert proc.returncode == 2 and message in _clean(proc), (args, proc.stderr)
    assert not (tmp_path / "x.tar.gz").exists()
