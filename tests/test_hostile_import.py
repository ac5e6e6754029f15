"""Hostile cache exports: forged records are refused whole, values never imported, out/ kept.

Each archive is built here from a real export (``cache export --all``) by editing its
``results.json``; each import must exit 2 with a message naming the member and the field, or
(for values) leave the value out. Nothing may be written outside the project and the cache.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import ASSETS, TINY_RECIPE, Project

from motionflow.cache.store import Cache

Members = list[tuple[tarfile.TarInfo, bytes]]
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
    edit = _set("image.prepare", "outputs", "image", "ext", value=".csv")
    report = _run_clean(project, _forge(tmp_path / "csv.tar.gz", export, edit))
    assert len(report["added"]) == 1 and len(report["skipped"]) == 2


def test_a_symlinked_out_folder_is_never_written_through(
    export: Members, project: Project, tmp_path: Path, files_under: Snap
) -> None:
    archive = _forge(tmp_path / "good.tar.gz", export, lambda records: None)
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
    archive = _forge(tmp_path / "good.tar.gz", export, lambda records: None)
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
_ZEROS_MIB = 1 << 20


def _block(info: tarfile.TarInfo, data: bytes = b"") -> bytes:
    """One tar member: its GNU header and its data padded to the 512-byte block."""
    pad = -len(data) % tarfile.BLOCKSIZE
    return info.tobuf(tarfile.GNU_FORMAT) + data + b"\0" * pad


def _gz(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=9, mtime=0)


def _bomb(path: Path, members: Members, size: int, edit: Callable[[dict[str, Any]], None]) -> str:
    """The export plus a blob of ``size`` zero bytes (a multiple of 1 MiB), as a gzip bomb.

    The zeros are one compressed MiB repeated (gzip allows concatenated members), so the
    archive takes a few MB on disk and no time to build; nothing holds ``size`` bytes.
    Returns the bomb's member name.
    """
    assert size % _ZEROS_MIB == 0
    name = "blobs/" + "ab" * 32
    head = b""
    for info, original in members:
        data = original
        if info.name == "results.json":
            body = json.loads(data)
            edit({r["stage_kind"]: r for r in body["results"].values()})
            data = json.dumps(body).encode()
        copy = tarfile.TarInfo(info.name)
        copy.type, copy.mode, copy.size = info.type, info.mode, len(data)
        head += _block(copy, data if copy.isreg() else b"")
    bomb = tarfile.TarInfo(name)
    bomb.size = size
    head += bomb.tobuf(tarfile.GNU_FORMAT)
    zeros = _gz(b"\0" * _ZEROS_MIB)
    with path.open("wb") as out:
        out.write(_gz(head))
        for _ in range(size // _ZEROS_MIB):
            out.write(zeros)
        out.write(_gz(b"\0" * tarfile.BLOCKSIZE * 2))
    return name


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
    assert _cache_bytes(project) < _ZEROS_MIB
    listed = project.cli("cache", "ls", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout) == [], listed.stderr


def test_a_gzip_bomb_is_refused_from_its_header(
    export: Members, project: Project, tmp_path: Path
) -> None:
    archive = tmp_path / "bomb.tar.gz"
    name = _bomb(archive, export, 2 << 30, lambda records: None)  # 2 GiB of zeros
    assert archive.stat().st_size < 8 * _ZEROS_MIB
    started = time.monotonic()
    proc = project.cli("cache", "import", str(archive))
    assert time.monotonic() - started < 30  # never decompressed: decided from the header
    _refused(project, archive, proc, name, "2147483648 bytes", "nothing was imported")


def test_a_gzip_bomb_its_records_vouch_for_is_hashed_before_a_byte_is_written(
    export: Members, project: Project, tmp_path: Path
) -> None:
    size = 64 * _ZEROS_MIB
    vouch = _set(
        "kling.motion_control",
        "outputs",
        "video",
        value={"file": "blake3:" + "ab" * 32, "size": size, "ext": ".mp4"},
    )
    archive = tmp_path / "vouched.tar.gz"
    kept = [(info, data) for info, data in export if not info.name.startswith("blobs/")]
    name = _bomb(archive, kept, size, vouch)
    proc = project.cli("cache", "import", str(archive))
    _refused(project, archive, proc, name, "does not match its digest")


def test_a_sparse_member_is_refused(export: Members, project: Project, tmp_path: Path) -> None:
    sparse = tarfile.TarInfo("blobs/" + "cd" * 32)
    sparse.type = tarfile.GNUTYPE_SPARSE
    sparse.size = 0
    results = next(data for info, data in export if info.name == "results.json")
    info = tarfile.TarInfo("results.json")
    info.size = len(results)
    archive = tmp_path / "sparse.tar.gz"
    archive.write_bytes(_gz(_block(info, results) + _block(sparse) + b"\0" * 1024))
    proc = project.cli("cache", "import", str(archive))
    _refused(project, archive, proc, "sparse", "blobs/cdcd")


def test_a_header_longer_than_its_data_is_refused(
    export: Members, project: Project, tmp_path: Path
) -> None:
    """A truncated archive: the last blob's header declares more bytes than follow it."""
    blob_info, blob = next((i, d) for i, d in export if i.name.startswith("blobs/"))
    head = b"".join(
        _block(info, data) for info, data in export if not info.name.startswith("blobs/")
    )
    copy = tarfile.TarInfo(blob_info.name)
    copy.size = len(blob)
    archive = tmp_path / "truncated.tar.gz"
    archive.write_bytes(_gz(head + copy.tobuf(tarfile.GNU_FORMAT) + blob[: len(blob) // 2]))
    proc = project.cli("cache", "import", str(archive))
    _refused(project, archive, proc, blob_info.name, "truncated", "nothing was imported")


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
    archive = _forge(tmp_path / "good.tar.gz", export, lambda records: None)
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
    archive = _forge(tmp_path / "good.tar.gz", export, lambda records: None)
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
    archive = _forge(tmp_path / "good.tar.gz", export, lambda records: None)
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
