"""Hostile cache exports, forged from a real one: the archive half of the hostile corpus.

An export cannot be written by hand (its records name blobs by digest), so every attack starts
from the members of a real ``motionflow cache export`` and changes one thing: a record's field
(:data:`FORGERIES`), a gzip bomb (:func:`bomb`), a sparse member (:func:`sparse_archive`) or
a header that promises more bytes than follow (:func:`truncated_archive`).
``tests/test_hostile_import.py`` imports each one; to write them all out::

    motionflow cache export good.tar.gz --all
    python tests/hostile/archives.py good.tar.gz DEST
"""

from __future__ import annotations

import gzip
import io
import json
import re
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

Members = list[tuple[tarfile.TarInfo, bytes]]
Edit = Callable[[dict[str, Any]], None]

ZEROS_MIB = 1 << 20


def read_members(archive: Path) -> Members:
    """Every member of ``archive`` with its bytes."""
    with tarfile.open(archive) as tar:
        members = []
        for member in tar.getmembers():
            handle = tar.extractfile(member)
            members.append((member, handle.read() if handle else b""))
    return members


def _edited(info: tarfile.TarInfo, data: bytes, edit: Edit) -> tuple[tarfile.TarInfo, bytes]:
    """A copy of the member, with ``results.json`` edited by ``edit`` (records by kind)."""
    if info.name == "results.json":
        body = json.loads(data)
        edit({r["stage_kind"]: r for r in body["results"].values()})
        data = json.dumps(body).encode()  # NaN stays NaN: json writes it
    copy = tarfile.TarInfo(info.name)
    copy.type, copy.mode, copy.size = info.type, info.mode, len(data)
    return copy, data


def forge(path: Path, members: Members, edit: Edit) -> Path:
    """``members`` with ``results.json`` edited by ``edit``, written to ``path``."""
    with tarfile.open(path, "w:gz") as tar:
        for info, original in members:
            copy, data = _edited(info, original, edit)
            tar.addfile(copy, io.BytesIO(data) if copy.isreg() else None)
    return path


def unchanged(records: dict[str, Any]) -> None:
    """The edit that changes nothing (a good archive)."""


def rename_output(kind: str, old: str, new: str) -> Edit:
    def edit(records: dict[str, Any]) -> None:
        outputs = records[kind]["outputs"]
        outputs[new] = outputs.pop(old)

    return edit


def set_field(kind: str, *path: str, value: Any) -> Edit:
    def edit(records: dict[str, Any]) -> None:
        target = records[kind]
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value

    return edit


_TAKE = "kling.motion_control"

#: Forged records that must refuse the whole import, and the field the message names.
FORGERIES: dict[str, tuple[Edit, str]] = {
    "name ../../x": (rename_output(_TAKE, "video", "../../x"), "'../../x'"),
    "name a/b": (rename_output(_TAKE, "video", "a/b"), "'a/b'"),
    "free name ../x": (rename_output("image.prepare", "image", "../x"), "'../x'"),
    "ext escapes": (
        set_field(_TAKE, "outputs", "video", "ext", value="/../../evil.sh"),
        "outputs['video'].ext",
    ),
    "ext after mp4": (
        set_field(_TAKE, "outputs", "video", "ext", value=".mp4/../../x"),
        "outputs['video'].ext",
    ),
    "paid ext .sh": (
        set_field(_TAKE, "outputs", "video", "ext", value=".sh"),
        "outputs['video'].ext",
    ),
    "free ext escapes": (
        set_field("image.prepare", "outputs", "image", "ext", value="/../x.png"),
        "outputs['image'].ext",
    ),
    "unknown kind": (set_field("prompt", "stage_kind", value="evil.kind"), "'evil.kind'"),
    "NaN usd": (
        set_field(_TAKE, "meta", "estimated_usd", value=float("nan")),
        "meta.estimated_usd",
    ),
    "text usd": (set_field(_TAKE, "meta", "estimated_usd", value="0.14"), "meta.estimated_usd"),
    "negative size": (set_field(_TAKE, "outputs", "video", "size", value=-1), "size"),
    "bad digest": (
        set_field(_TAKE, "outputs", "video", "file", value="md5:" + "0" * 64),
        "outputs['video'].file",
    ),
    "huge text": (set_field("prompt", "outputs", "text", "value", value="x" * 100_000), "value"),
}


def block(info: tarfile.TarInfo, data: bytes = b"") -> bytes:
    """One tar member: its GNU header and its data padded to the 512-byte block."""
    pad = -len(data) % tarfile.BLOCKSIZE
    return info.tobuf(tarfile.GNU_FORMAT) + data + b"\0" * pad


def gz(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=9, mtime=0)


def bomb(path: Path, members: Members, size: int, edit: Edit = unchanged) -> str:
    """The export plus a blob of ``size`` zero bytes (a multiple of 1 MiB), as a gzip bomb.

    The zeros are one compressed MiB repeated (gzip allows concatenated members), so the
    archive takes a few MB on disk and no time to build; nothing holds ``size`` bytes.
    Returns the bomb's member name.
    """
    assert size % ZEROS_MIB == 0
    name = "blobs/" + "ab" * 32
    head = b""
    for info, original in members:
        copy, data = _edited(info, original, edit)
        head += block(copy, data if copy.isreg() else b"")
    member = tarfile.TarInfo(name)
    member.size = size
    head += member.tobuf(tarfile.GNU_FORMAT)
    zeros = gz(b"\0" * ZEROS_MIB)
    with path.open("wb") as out:
        out.write(gz(head))
        for _ in range(size // ZEROS_MIB):
            out.write(zeros)
        out.write(gz(b"\0" * tarfile.BLOCKSIZE * 2))
    return name


def sparse_archive(path: Path, members: Members) -> str:
    """The export's records and a GNU sparse member; returns the sparse member's name."""
    sparse = tarfile.TarInfo("blobs/" + "cd" * 32)
    sparse.type = tarfile.GNUTYPE_SPARSE
    sparse.size = 0
    results = next(data for info, data in members if info.name == "results.json")
    info = tarfile.TarInfo("results.json")
    info.size = len(results)
    path.write_bytes(gz(block(info, results) + block(sparse) + b"\0" * 1024))
    return sparse.name


def truncated_archive(path: Path, members: Members) -> str:
    """The export cut inside its last blob, whose header declares more bytes than follow."""
    blob_info, blob = next((i, d) for i, d in members if i.name.startswith("blobs/"))
    head = b"".join(
        block(info, data) for info, data in members if not info.name.startswith("blobs/")
    )
    copy = tarfile.TarInfo(blob_info.name)
    copy.size = len(blob)
    path.write_bytes(gz(head + copy.tobuf(tarfile.GNU_FORMAT) + blob[: len(blob) // 2]))
    return blob_info.name


def main(argv: list[str]) -> int:
    """Write every forged archive of the export ``argv[0]`` under ``argv[1]``."""
    if len(argv) != 2:
        print("usage: python tests/hostile/archives.py EXPORT.tar.gz DEST", file=sys.stderr)
        return 2
    members = read_members(Path(argv[0]))
    dest = Path(argv[1])
    dest.mkdir(parents=True, exist_ok=True)
    for case, (edit, _field) in FORGERIES.items():
        forge(
            dest / (re.sub(r"[^a-z0-9]+", "-", case.lower()).strip("-") + ".tar.gz"), members, edit
        )
    bomb(dest / "gzip-bomb-2gib.tar.gz", members, 2 << 30)
    sparse_archive(dest / "sparse-member.tar.gz", members)
    truncated_archive(dest / "truncated.tar.gz", members)
    print(f"wrote {len(FORGERIES) + 3} archives under {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
