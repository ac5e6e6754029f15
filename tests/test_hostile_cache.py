"""Damaged or hostile cache, journal and out/ folders: exit 2, located, nothing lost.

Read-only and full folders are made for real, not simulated: a read-only bind mount or a tiny
tmpfs inside a user namespace (``unshare``), which stops writes even for root (``chmod`` does
not). Where user namespaces are not available those cases are skipped, with the reason.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import ASSETS, TINY_RECIPE, Project

CLI = f"{shlex.quote(sys.executable)} -c 'from motionflow.cli import main; main()'"


def _clean(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "internal error" not in proc.stderr, proc.stderr


@pytest.fixture(scope="module")
def _ran_once(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """``TINY_RECIPE`` run once per module (a run costs seconds; each test gets a copy)."""
    base = tmp_path_factory.mktemp("ran")
    source = Project(base / "proj", base / "cache")
    shutil.copytree(ASSETS, source.root / "assets")
    source.write("motionflow.toml", "")
    source.write("tiny.yaml", TINY_RECIPE)
    ran = source.run_json("tiny.yaml")
    assert ran["_exit"] == 0, ran["_stderr"]
    return source


@pytest.fixture
def done(project: Project, _ran_once: Project) -> Project:
    """``TINY_RECIPE`` run once: a paid (simulated) take, a prompt and a still, and a journal
    (a copy of the module's run, at this test's own paths)."""
    shutil.rmtree(project.root)
    shutil.copytree(_ran_once.root, project.root, symlinks=True)
    shutil.copytree(_ran_once.cache, project.cache, symlinks=True)
    return project


def _namespaces_work(tmp: Path) -> str | None:
    """Why read-only mounts cannot be made here, or None when they can."""
    if shutil.which("unshare") is None:
        return "no unshare(1) on this machine"
    (tmp / "probe").mkdir(exist_ok=True)
    script = f"mount --bind -o ro {tmp}/probe {tmp}/probe && ! touch {tmp}/probe/x"
    proc = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
        capture_output=True,
        text=True,
        check=False,
    )
    return None if proc.returncode == 0 else f"user namespaces unavailable: {proc.stderr[:200]}"


def _cli_with(
    project: Project, mounts: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``motionflow ARGS`` in a private mount namespace after running the ``mounts`` script."""
    reason = _namespaces_work(project.root.parent)
    if reason is not None:
        pytest.skip(reason)
    command = f"{mounts} && cd {shlex.quote(str(project.root))} && exec {CLI} " + " ".join(
        shlex.quote(a) for a in args
    )
    return subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", command],
        env={**os.environ, "MOTIONFLOW_CACHE": str(project.cache), **(env or {})},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def _ro(path: Path) -> str:
    return f"mount --bind -o ro {shlex.quote(str(path))} {shlex.quote(str(path))}"


# -- 1. journal records of the wrong types ---------------------------------------------------
def _record(project: Project) -> Path:
    (path,) = (project.cache / "journal").glob("*.json")
    return path


def _break(path: Path, how: str) -> None:
    good = json.loads(path.read_text(encoding="utf-8"))
    if how == "list":
        path.write_text(json.dumps(list(good.items())), encoding="utf-8")
    elif how == "text-amount":
        path.write_text(json.dumps({**good, "estimated_usd": "abc"}), encoding="utf-8")
    elif how == "number-state":
        path.write_text(json.dumps({**good, "state": 3, "history": 5}), encoding="utf-8")
    elif how == "nan":
        path.write_text(json.dumps({**good, "actual_usd": float("nan")}), encoding="utf-8")
    else:
        path.write_bytes(b"\xff\x00 not json")


@pytest.mark.parametrize("how", ["list", "text-amount", "number-state", "nan", "bytes"])
@pytest.mark.slow
def test_damaged_journal_record_is_named_with_the_fix(done: Project, how: str) -> None:
    path = _record(done)
    _break(path, how)
    for args in (("jobs",), ("spend", "--simulated"), ("jobs", "--json")):
        proc = done.cli(*args)
        _clean(proc)
        assert proc.returncode == 2, (args, proc.stderr)
        assert str(path) in proc.stderr and "mv " in proc.stderr, proc.stderr
    path.rename(path.with_name(path.name + ".damaged"))  # the fix the message gives
    assert done.cli("jobs").returncode == 0
    assert done.cli("spend").returncode == 0


@pytest.mark.slow
def test_damaged_archived_record_is_named_too(done: Project) -> None:
    archive = done.cache / "journal" / "archive"
    archive.mkdir()
    bad = archive / ("a" * 64 + ".20260101T000000000000.json")
    bad.write_text('{"key": [1, 2]}', encoding="utf-8")
    proc = done.cli("spend")
    _clean(proc)
    assert proc.returncode == 2 and str(bad) in proc.stderr


# -- 2. a garbage manifest ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "garbage",
    [
        bytes(range(256)) * 2,
        b"[1, 2, 3]",
        b'{"entries": [1]}',
        b'{"entries": {"take/default": 5}}',
        b'{"entries": {"take/default": {"key": 5, "components": []}}}',
        b'{"entries": {"x/default": {"key": "k", "components": {}, "files": [1, 2]}}}',
    ],
    ids=["bytes", "list", "entries-list", "entry-int", "key-int", "files-list"],
)
@pytest.mark.slow
def test_garbage_manifest_is_rebuilt_on_recheck(done: Project, garbage: bytes) -> None:
    manifest = done.out("tiny") / "manifest.json"
    manifest.write_bytes(garbage)
    proc = done.cli("run", "tiny.yaml", "--recheck")
    _clean(proc)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(manifest.read_text(encoding="utf-8"))["entries"]
    assert (done.out("tiny") / "default" / "take.mp4").is_file()


@pytest.mark.slow
def test_manifest_paths_outside_out_are_never_deleted(done: Project) -> None:
    victim = done.root / "precious.txt"
    victim.write_text("keep me", encoding="utf-8")
    st = victim.stat()
    manifest = done.out("tiny") / "manifest.json"
    body = json.loads(manifest.read_text(encoding="utf-8"))
    body["entries"]["gone/default"] = {
        "key": "k" * 64,
        "components": {},
        "files": {"../../precious.txt": [st.st_size, st.st_mtime_ns]},
    }
    manifest.write_text(json.dumps(body), encoding="utf-8")
    proc = done.cli("run", "tiny.yaml", "--recheck")
    _clean(proc)
    assert proc.returncode == 0, proc.stderr
    assert victim.read_text(encoding="utf-8") == "keep me"


@pytest.mark.slow
def test_gc_refuses_to_guess_from_a_damaged_manifest(done: Project) -> None:
    manifest = done.out("tiny") / "manifest.json"
    manifest.write_bytes(b"\x00garbage")
    proc = done.cli("cache", "gc", "--include-paid", "--project", str(done.root))
    _clean(proc)
    assert proc.returncode == 2 and str(manifest) in proc.stderr, proc.stderr
    assert "--recheck" in proc.stderr
    assert done.cli("run", "tiny.yaml", "--recheck").returncode == 0  # the fix
    assert done.cli("cache", "gc", "--project", str(done.root)).returncode == 0


# -- 3. a read-only cache ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [
        ("run", "tiny.yaml", "--recheck"),
        ("run", "tiny.yaml", "--var", "style=another dancer"),
        ("cache", "gc"),
        ("cache", "forget", "0000000000000000"),
        ("cache", "verify"),
        ("cache", "import", "team.tar.gz"),
    ],
)
@pytest.mark.slow
def test_read_only_cache_is_reported_as_read_only(done: Project, args: tuple[str, ...]) -> None:
    assert done.cli("cache", "export", "team.tar.gz", "--all").returncode == 0
    proc = _cli_with(done, _ro(done.cache), *args)
    _clean(proc)
    assert proc.returncode == 2, proc.stderr
    assert "read-only" in proc.stderr and str(done.cache) in proc.stderr, proc.stderr
    assert "corrupt" not in proc.stderr
    assert "MOTIONFLOW_CACHE" in proc.stderr  # the fix


@pytest.mark.slow
def test_read_only_journal_on_adopt_is_reported(done: Project) -> None:
    path = _record(done)
    record = json.loads(path.read_text(encoding="utf-8"))
    key = "d" * 64
    record.update(key=key, state="in_doubt", provider="empiriolabs", job_id=None)
    (done.cache / "journal" / f"{key}.json").write_text(json.dumps(record), encoding="utf-8")
    key_env = {"EMPIRIOLABS_API_KEY": "sk-empiriolabs-test"}
    proc = _cli_with(done, _ro(done.cache), "jobs", "adopt", key[:12], "--job", "x", env=key_env)
    _clean(proc)
    assert proc.returncode == 2, proc.stderr
    assert "read-only" in proc.stderr and str(done.cache) in proc.stderr, proc.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through chmod; the mount cases cover it")
def test_chmod_read_only_cache_is_reported(done: Project) -> None:
    folders = [done.cache, *[p for p in done.cache.rglob("*") if p.is_dir()]]
    for folder in folders:
        folder.chmod(0o555)
    try:
        proc = done.cli("run", "tiny.yaml", "--recheck")
    finally:
        for folder in folders:
            folder.chmod(0o755)
    _clean(proc)
    assert proc.returncode == 2 and "read-only" in proc.stderr, proc.stderr


# -- 4. a read-only or full out/ ---------------------------------------------------------------
def _paid_keys(project: Project) -> set[str]:
    rows: list[dict[str, Any]] = json.loads(project.cli("cache", "ls", "--json").stdout)
    return {r["key"] for r in rows if r["paid"]}


@pytest.mark.parametrize(
    ("mount", "cause"),
    [("ro", "read-only"), ("full", "no space left")],
)
@pytest.mark.slow
def test_unwritable_out_on_run_keeps_the_paid_result(done: Project, mount: str, cause: str) -> None:
    out = done.root / "out"
    paid = _paid_keys(done)
    script = _ro(out) if mount == "ro" else f"mount -t tmpfs -o size=8k tmpfs {out}"
    proc = _cli_with(done, script, "run", "tiny.yaml", "--var", "style=a new dancer")
    _clean(proc)
    assert proc.returncode == 2, proc.stderr
    assert cause in proc.stderr and str(out / "tiny") in proc.stderr, proc.stderr
    new = _paid_keys(done) - paid
    assert len(new) == 1  # the generation made by the failed run is in the cache
    ran = done.run_json("tiny.yaml", "--var", "style=a new dancer")
    assert (ran["_exit"], ran["jobs_submitted"], ran["cached"]) == (0, 0, 3), ran


@pytest.mark.parametrize(
    ("mount", "cause"),
    [("ro", "read-only"), ("full", "no space left")],
)
@pytest.mark.slow
def test_unwritable_out_on_report(done: Project, mount: str, cause: str) -> None:
    out = done.root / "out"
    (done.out("tiny") / "index.html").unlink()
    script = _ro(out) if mount == "ro" else f"mount -t tmpfs -o size=8k tmpfs {out}"
    proc = _cli_with(done, script, "report", "tiny.yaml")
    _clean(proc)
    assert proc.returncode == 2, proc.stderr
    assert cause in proc.stderr and str(out) in proc.stderr, proc.stderr


# -- 5. gc while another process uses the cache ------------------------------------------------
HOLDER = """
import sys
from pathlib import Path
from motionflow.cache.store import Cache
cache = Cache(Path(sys.argv[1]))
cache.get_result("0" * 64)  # opens the index, as a planning run does
print("ready", flush=True)
sys.stdin.readline()
cache.close()
"""


@pytest.mark.slow
def test_gc_refuses_while_another_process_uses_the_cache(done: Project) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(done.cache)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        blobs = sorted(p.name for p in (done.cache / "blobs").rglob("*") if p.is_file())
        proc = done.cli("cache", "gc", "--include-paid", "--project", str(done.root / "none"))
        _clean(proc)
        assert proc.returncode == 2, proc.stderr
        assert "another motionflow process" in proc.stderr and str(done.cache) in proc.stderr
        assert sorted(p.name for p in (done.cache / "blobs").rglob("*") if p.is_file()) == blobs
        dry = done.cli("cache", "gc", "--dry-run")  # changes nothing: allowed
        assert dry.returncode == 0, dry.stderr
    finally:
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.close()
        holder.wait(timeout=60)
        if holder.stdout is not None:
            holder.stdout.close()
    assert done.cli("cache", "gc").returncode == 0  # once the other process is done


# -- 6 and 7. where imported results came from, and what an import skipped ---------------------
@pytest.mark.slow
def test_imported_results_say_where_from(done: Project, tmp_path: Path) -> None:
    archive = tmp_path / "team.tar.gz"
    assert done.cli("cache", "export", str(archive), "--all").returncode == 0
    mate = Project(done.root, tmp_path / "mate-cache")
    shutil.rmtree(done.root / "out")
    proc = mate.cli("cache", "import", str(archive))
    assert proc.returncode == 0, proc.stderr
    assert "skipped" in proc.stdout and "not a paid result" in proc.stdout, proc.stdout
    assert "added" in proc.stdout
    again = mate.cli("cache", "import", str(archive))
    assert "already in this cache" in again.stdout, again.stdout
    ran = mate.run_json("tiny.yaml")
    assert (ran["_exit"], ran["jobs_submitted"]) == (0, 0), ran
    why = mate.cli("why", "tiny.yaml")
    assert why.returncode == 0, why.stderr
    # the take's entry (its first line and the lines indented under it) names the archive
    entry = why.stdout[why.stdout.index("take[") :].split("\n", 1)
    entry = [entry[0], *[ln for ln in entry[1].splitlines() if ln.startswith(" ")][:1]]
    assert "imported from team.tar.gz" in " ".join(entry), why.stdout
    body = json.loads(mate.cli("why", "tiny.yaml", "--json").stdout)
    origins = {i["instance"]: i["imported"] for i in body["instances"]}
    assert origins["take[default]"]["from"] == "team.tar.gz"
    assert origins["prompt[default]"] is None
    receipt = json.loads((done.out("tiny") / "default" / "take.receipt.json").read_text())
    assert receipt["imported"]["from"] == "team.tar.gz"
    assert receipt["generation"]["imported_from"] == "team.tar.gz"
