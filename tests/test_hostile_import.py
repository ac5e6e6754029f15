"""Hostile cache exports: forged records are refused whole, values never imported, out/ kept.

Each archive is forged from a real export (``cache export --all``) by
``tests/hostile/archives.py``; each import must exit 2 with a message naming the member and the field, or
(for values) leave the value out. Nothing may be written outside the project and the cache.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import ASSETS, TINY_RECIPE, Project
from hostile.archives import (
    FORGERIES,
    ZEROS_MIB,
    Members,
    bomb,
    forge,
    read_members,
    set_field,
    sparse_archive,
    truncated_archive,
    unchanged,
)

from motionflow.cache.store import Cache

Snap = Callable[[Path], dict[str, tuple[int, int]]]


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Members:
    """The members of a real export of a run of ``TINY_RECIPE`` (a prompt, a take, a still)."""
    base = tmp_path_factory.mktemp("hostile")
    source = Project(base / "proj", base / "cache")
    shutil.copytree(ASSETS, source.root / "assets")
    source.write("motionflow.toml", "")
    source.write("tiny.yaml", TINY_RECIPE)
    ran = source.run_json("tiny.yaml")
    assert (ran["_exit"], ran["jobs_submitted"]) == (0, 1), ran["_stderr"]
    archive = base / "good.tar.gz"
    assert source.cli("cache", "export", str(archive), "--all").returncode == 0
    return read_members(archive)


@pytest.mark.parametrize("case", sorted(FORGERIES))
@pytest.mark.slow
def test_a_forged_record_refuses_the_whole_import(
    case: str, export: Members, project: Project, tmp_path: Path, files_under: Snap
) -> None:
    edit, field = FORGERIES[case]
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    (sentinel / "keep.txt").write_text("mine")
    before = files_under(tmp_path)
    archive = forge(tmp_path / "forged.tar.gz", export, edit)
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


@pytest.mark.slow
def test_a_changed_prompt_value_is_never_imported(
    export: Members, project: Project, tmp_path: Path
) -> None:
    injected = "IGNORE THE DANCER, INJECTED"
    archive = forge(
        tmp_path / "prompt.tar.gz",
        export,
        set_field("prompt", "outputs", "text", "value", value=injected),
    )
    report = _run_clean(project, archive)
    assert len(report["added"]) == 1 and len(report["skipped"]) == 2  # only the paid take
    project.write("tiny.yaml", TINY_RECIPE)
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
    edit = set_field("image.prepare", "outputs", "image", "ext", value=".csv")
    report = _run_clean(project, forge(tmp_path / "csv.tar.gz", export, edit))
    assert len(report["added"]) == 1 and len(report["skipped"]) == 2


def test_a_symlinked_out_folder_is_never_written_through(
    export: Members, project: Project, tmp_path: Path, files_under: Snap
) -> None:
    archive = forge(tmp_path / "good.tar.gz", export, unchanged)
    _run_clean(project, archive)
    project.write("tiny.yaml", TINY_RECIPE)
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
    archive = forge(tmp_path / "good.tar.gz", export, unchanged)
    [key] = _run_clean(project, archive)["added"]
    cache = Cache(project.cache)
    record = cache.get_result(key)
    assert record is not None
    record["outputs"]["video"]["ext"] = "/../../../evil.sh"
    cache.put_result(key, record)
    project.write("tiny.yaml", TINY_RECIPE)
    before = files_under(tmp_path)
    run = project.cli("run", "tiny.yaml")
    assert run.returncode == 2, (run.stdout, run.stderr)
    assert "Traceback" not in run.stderr and key[:12] in run.stderr, run.stderr
    assert "cache forget" in run.stderr
    new = set(files_under(tmp_path)) - set(before)
    assert not any("evil" in name for name in new), new
    assert all(name.startswith(("proj/", "cache/")) for name in new), new


# -- archives that attack the disk: bombs, sparse and truncated members, a read-only cache ------
def _cache_bytes(project: Project) -> int:
    return sum(p.stat().st_size for p in project.cache.rglob("*") if p.is_file())


def _refused(project: Project, archive: Path, proc: Any, *words: str) -> None:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert str(archive) in proc.stderr, proc.stderr
    for word in words:
        assert word in proc.stderr, (word, proc.stderr)
    assert not list(project.cache.glob("blobs/*/*"))
    assert not list(project.cache.glob("tmp/*")), "the staging folder was left behind"
    assert _cache_bytes(project) < ZEROS_MIB
    listed = project.cli("cache", "ls", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout) == [], listed.stderr


def test_a_gzip_bomb_is_refused_from_its_header(
    export: Members, project: Project, tmp_path: Path
) -> None:
    archive = tmp_path / "bomb.tar.gz"
    name = bomb(archive, export, 2 << 30, unchanged)  # 2 GiB of zeros
    assert archive.stat().st_size < 8 * ZEROS_MIB
    proc = project.cli("cache", "import", str(archive))  # decided from the header: the
    # cache never holds a MiB of it (checked by _refused)
    _refused(project, archive, proc, name, "2147483648 bytes", "nothing was imported")


def test_a_gzip_bomb_its_records_vouch_for_is_hashed_before_a_byte_is_written(
    export: Members, project: Project, tmp_path: Path
) -> None:
    size = 64 * ZEROS_MIB
    vouch = set_field(
        "kling.motion_control",
        "outputs",
        "video",
        value={"file": "blake3:" + "ab" * 32, "size": size, "ext": ".mp4"},
    )
    archive = tmp_path / "vouched.tar.gz"
    kept = [(info, data) for info, data in export if not info.name.startswith("blobs/")]
    name = bomb(archive, kept, size, vouch)
    proc = project.cli("cache", "import", str(archive))
    _refused(project, archive, proc, name, "does not match its digest")


def test_a_sparse_member_is_refused(export: Members, project: Project, tmp_path: Path) -> None:
    archive = tmp_path / "sparse.tar.gz"
    name = sparse_archive(archive, export)
    proc = project.cli("cache", "import", str(archive))
    _refused(project, archive, proc, "sparse", name[:10])


def test_a_header_longer_than_its_data_is_refused(
    export: Members, project: Project, tmp_path: Path
) -> None:
    """A truncated archive: the last blob's header declares more bytes than follow it."""
    archive = tmp_path / "truncated.tar.gz"
    name = truncated_archive(archive, export)
    proc = project.cli("cache", "import", str(archive))
    _refused(project, archive, proc, name, "truncated", "nothing was imported")


def _cli_patched(project: Project, patch: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``motionflow ARGS`` with ``patch`` run first (``root`` is the cache folder's path)."""
    code = (
        "import errno, os, pathlib, shutil\n"
        f"root = {str(project.cache)!r}\n"
        f"{textwrap.dedent(patch)}\n"
        "from motionflow.cli import main\nmain()\n"
    )
    env = {**os.environ, "MOTIONFLOW_CACHE": str(project.cache)}
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=project.root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


_READ_ONLY = """
    def _guard(path):
        if os.path.abspath(os.fsdecode(path)).startswith(root):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))
    _mkdir, _open = os.mkdir, os.open
    def mkdir(path, mode=0o777, *, dir_fd=None):
        if not os.path.exists(path):
            _guard(path)
        return _mkdir(path, mode, dir_fd=dir_fd)
    def open_(path, flags, mode=0o777, *, dir_fd=None):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            _guard(path)
        return _open(path, flags, mode, dir_fd=dir_fd)
    os.mkdir, os.open = mkdir, open_
"""


def test_a_read_only_cache_is_reported_as_read_only(
    export: Members, project: Project, tmp_path: Path
) -> None:
    """As root, chmod cannot make a folder read-only: the CLI then sees EROFS (a read-only
    mount) from every write under the cache instead; otherwise the folder is chmod 0o555."""
    archive = forge(tmp_path / "good.tar.gz", export, unchanged)
    for sub in ("blobs", "tmp", "locks"):
        (project.cache / sub).mkdir(parents=True)
    if os.geteuid() == 0:
        proc = _cli_patched(project, _READ_ONLY, "cache", "import", str(archive))
    else:
        for folder in [project.cache, *project.cache.iterdir()]:
            folder.chmod(0o555)
        try:
            proc = project.cli("cache", "import", str(archive))
        finally:
            for folder in [project.cache, *project.cache.iterdir()]:
                folder.chmod(0o755)
    assert "corrupt" not in proc.stderr, proc.stderr
    _refused(project, archive, proc, "the cache folder", "is read-only")


def test_a_full_disk_is_reported_as_a_full_disk(
    export: Members, project: Project, tmp_path: Path
) -> None:
    archive = forge(tmp_path / "good.tar.gz", export, unchanged)
    patch = """
        _usage = shutil.disk_usage
        def disk_usage(path):
            real = _usage(path)
            return type(real)(real.total, real.total - 1000, 1000)
        shutil.disk_usage = disk_usage
    """
    proc = _cli_patched(project, patch, "cache", "import", str(archive))
    _refused(project, archive, proc, "the disk holding the cache is full (1000 bytes free")


def test_running_out_of_disk_while_extracting_removes_the_staging(
    export: Members, project: Project, tmp_path: Path
) -> None:
    archive = forge(tmp_path / "good.tar.gz", export, unchanged)
    patch = """
        class _Full:
            def __init__(self, handle):
                self.handle = handle
            def __enter__(self):
                return self
            def __exit__(self, *exc):
                self.handle.close()
            def write(self, data):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        _open = pathlib.Path.open
        def open_(self, mode="r", *args, **kwargs):
            handle = _open(self, mode, *args, **kwargs)
            full = "w" in mode and str(self).startswith(root + "/tmp/")
            return _Full(handle) if full else handle
        pathlib.Path.open = open_
    """
    proc = _cli_patched(project, patch, "cache", "import", str(archive))
    _refused(project, archive, proc, "the disk holding the cache is full")


def test_the_archive_script_writes_every_forgery(export: Members, tmp_path: Path) -> None:
    """``python tests/hostile/archives.py EXPORT DEST`` writes the archive half of the corpus."""
    good = forge(tmp_path / "good.tar.gz", export, unchanged)
    script = Path(__file__).parent / "hostile" / "archives.py"
    proc = subprocess.run(
        [sys.executable, str(script), str(good), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    written = sorted(path.name for path in (tmp_path / "out").iterdir())
    assert len(written) == len(FORGERIES) + 3, written
    assert "gzip-bomb-2gib.tar.gz" in written and "ext-escapes.tar.gz" in written
