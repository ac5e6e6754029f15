"""The team's remote cache's result objects: how one is written, and what comes down checked.

A pushed result is one object (:func:`result_object`). What comes down is untrusted data
(docs/team.md): a result object
(``v1/results/<key>.json``) must follow the rules of ``cache import``
(:func:`~motionflow.cache.archive.check_record`, :func:`check_result`); each of its files
(``v1/blobs/<64 hex>``) is downloaded into ``tmp/`` and its size and blake3 digest verified
before it is stored (:func:`fetch_blob`); the ``info`` of prepared reference media is measured
again on its file (:func:`check_prepared`). What fails raises :class:`Damaged`, a verdict on
the remote's object; :class:`~motionflow.cache.remote.RemoteCache` reports it.
"""

from __future__ import annotations

import getpass
import json
import socket
from pathlib import Path
from typing import Any

from motionflow.cache.archive import KindOf, check_record, json_problem
from motionflow.cache.integrity import utc_now
from motionflow.cache.objects import ObjectStore, RemoteError
from motionflow.cache.store import Cache
from motionflow.errors import UsageError

__all__ = [
    "BLOBS",
    "MAX_BLOB_BYTES",
    "MAX_RESULT_BYTES",
    "REMOTE_FORMAT",
    "REMOTE_VERSION",
    "RESULTS",
    "Damaged",
    "check_prepared",
    "check_result",
    "fetch_blob",
    "no_constant",
    "result_object",
    "transient",
]

REMOTE_FORMAT = "motionflow-remote-result"
REMOTE_VERSION = 1
RESULTS = "v1/results/"
BLOBS = "v1/blobs/"
#: Bounds on what is read from the remote (untrusted): a result object, a file.
MAX_RESULT_BYTES = 64 << 20
MAX_BLOB_BYTES = 16 << 30
#: Fields a pushed record may carry that say where this machine got it; never sent.
_ORIGIN_FIELDS = ("remote", "imported")


class Damaged(Exception):  # noqa: N818 - a verdict on a remote object, not a failure here
    """The remote's object for a key is unusable (invalid, truncated, not matching its digest)."""


def no_constant(name: str) -> Any:
    """``parse_constant`` for :func:`json.loads`: NaN and Infinity are refused."""
    msg = f"{name} is not a number JSON allows"
    raise ValueError(msg)


def transient(exc: RemoteError) -> bool:
    """True when the store failed (network, denied); False when it answered with a bad object.

    ``ObjectStore`` raises an object's size problems itself (no cause), and wraps the failures
    of boto3 (``raise ... from exc``).
    """
    return exc.__cause__ is not None


def _who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (containers)
        user = "?"
    return f"{user}@{socket.gethostname()}"[:128]


def result_object(key: str, record: dict[str, Any], receipt: dict[str, Any] | None) -> bytes:
    """The remote's object for one result (what :func:`check_result` reads back).

    The record is sent without the fields that say where this machine got it.
    """
    sent = {k: v for k, v in record.items() if k not in _ORIGIN_FIELDS}
    body = {
        "format": REMOTE_FORMAT,
        "version": REMOTE_VERSION,
        "key": key,
        "record": sent,
        "receipt": receipt,
        "pushed_by": _who(),
        "pushed_at": utc_now(),
    }
    return json.dumps(body, sort_keys=True).encode()


def check_result(
    key: str, data: bytes, kind_of: KindOf
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The record and receipt of a result object, if it follows every rule.

    Raises:
        Damaged: why not.
    """
    try:
        body = json.loads(data, parse_constant=no_constant)
    except (ValueError, RecursionError) as exc:
        raise Damaged(f"it is not JSON ({str(exc)[:200]})") from None
    if not isinstance(body, dict) or body.get("format") != REMOTE_FORMAT:
        raise Damaged("it is not a motionflow remote result")
    if body.get("version") != REMOTE_VERSION:
        raise Damaged(f"its version {str(body.get('version'))[:32]!r} is not {REMOTE_VERSION}")
    if body.get("key") != key:
        raise Damaged("it names another key than its object's name")
    record = body.get("record")
    receipt = body.get("receipt")
    if receipt is not None and not isinstance(receipt, dict):
        raise Damaged("its receipt is not a JSON object")
    if receipt is not None and (problem := json_problem(receipt, "receipt")):
        raise Damaged(f"field {problem[0][:64]}: {problem[1]}")
    sizes: dict[str, int] = {}
    outputs = record.get("outputs") if isinstance(record, dict) else None
    for name, out in outputs.items() if isinstance(outputs, dict) else []:
        if isinstance(out, dict) and isinstance(out.get("file"), str):
            size = out.get("size")
            if isinstance(size, bool) or not isinstance(size, int):
                raise Damaged(f"field outputs[{str(name)[:64]!r}].size is not a size")
            if not 0 <= size <= MAX_BLOB_BYTES:
                raise Damaged(
                    f"field outputs[{str(name)[:64]!r}].size: {size} bytes is not between "
                    f"0 and {MAX_BLOB_BYTES}"
                )
            if sizes.setdefault(out["file"], size) != size:
                raise Damaged("two outputs give one file two sizes")
    try:
        clean = check_record(Path("remote"), key, record, sizes, kind_of)
    except UsageError as exc:
        text = str(exc)
        start = text.find("results.json: ")
        start = start + len("results.json: ") if start >= 0 else text.find(": ") + 2
        raise Damaged(text[start:].removesuffix("; nothing was imported")) from None
    return clean, receipt


def check_prepared(cache: Cache, record: dict[str, Any]) -> None:
    """Measure a pulled prepared file again: the ``info`` that comes with it must agree.

    ``info`` is a value (never trusted under ``share = "default"``): its measures (width,
    height; for a clip also duration, frame rate, audio) are what the file (already stored in
    ``cache``) says, and its text (what was done, warnings) is bounded text, shown, never sent
    to a provider.

    Raises:
        Damaged: the file is not readable media, or ``info`` says otherwise.
    """
    from motionflow.media.probe import probe
    from motionflow.media.rules import display_size

    outputs = record["outputs"]
    name = "image" if record["stage_kind"] == "image.prepare" else "video"
    info = outputs.get("info", {}).get("value")
    if name not in outputs or not isinstance(info, dict):
        raise Damaged(f"a prepared file comes with its {name} and its info")
    try:
        found = probe(cache.blob_path(outputs[name]["file"]))
    except Exception as exc:  # noqa: BLE001 - hostile bytes may fail any way
        raise Damaged(f"its {name} is not readable media ({str(exc)[:200]})") from None
    width, height = display_size(found) if name == "video" else (found.width, found.height)
    measured: dict[str, Any] = {"width": width, "height": height}
    if name == "video":
        measured |= {
            "duration": round(found.duration, 3),
            "fps": round(found.fps, 3),
            "has_audio": found.has_audio,
        }
    for field_name, value in measured.items():
        if info.get(field_name) != value:
            raise Damaged(
                f"field outputs['info'].value.{field_name}: {str(info.get(field_name))[:32]!r}"
                f" is not what its {name} measures ({value!r})"
            )


def fetch_blob(store: ObjectStore, cache: Cache, digest: str, size: int) -> int:
    """Download one file into ``tmp/``, verify its size and digest, then store it.

    Returns:
        The bytes stored: ``size``, or 0 when ``cache`` holds the file already.

    Raises:
        Damaged: the remote's file is missing, of another size, or not matching its digest.
        RemoteError: the store failed.
    """
    if cache.has_blob(digest):
        return 0
    hexd = digest.removeprefix("blake3:")
    name = BLOBS + hexd
    info = store.head(name)
    if info is None:
        raise Damaged(f"its file {digest[:19]}… is missing from {BLOBS}")
    if info.size != size:
        raise Damaged(f"its file {name} holds {info.size} bytes, not the {size} its record says")
    from motionflow.keys import digest_file

    with cache.temp_file() as tmp:
        try:
            got = store.download(name, tmp, max_bytes=size)
        except FileNotFoundError:
            raise Damaged(f"its file {digest[:19]}… is missing from {BLOBS}") from None
        except RemoteError as exc:
            if transient(exc):
                raise
            raise Damaged(f"its file {name} is longer than {size} bytes") from None
        if got != size:
            raise Damaged(f"its file {name} is shorter than {size} bytes (truncated)")
        if digest_file(tmp) != digest:
            raise Damaged(f"its file {name} does not match its digest (corrupt or tampered with)")
        cache.commit_blob(tmp, digest)
    return size
