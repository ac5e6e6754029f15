"""The fake server's file store (outputs and uploads) and its multipart upload parser."""

from __future__ import annotations

import mimetypes
import re
import secrets
import threading
from dataclasses import dataclass
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
from typing import Any

from motionflow.fakeapi.jobs import ValidationFailure

__all__ = ["FileStore", "StoredFile", "UploadedPart", "parse_multipart", "receive_upload"]

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")


@dataclass(frozen=True)
class StoredFile:
    """One file in the store.

    Attributes:
        name: the file's name in the store (one URL path segment).
        path: where it is on disk.
        size: its length in bytes.
        content_type: the MIME type it is served with.
    """

    name: str
    path: Path
    size: int
    content_type: str


@dataclass(frozen=True)
class UploadedPart:
    """The file part of a multipart upload.

    Attributes:
        field: the form field's name.
        filename: the client's file name (may be empty).
        content_type: the part's declared MIME type.
        data: the file's bytes.
    """

    field: str
    filename: str
    content_type: str
    data: bytes


class FileStore:
    """A flat directory of files served at ``/files/{name}``.

    Args:
        root: the directory; created if missing.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def new_name(self, hint: str) -> str:
        """A fresh, URL-safe name that keeps ``hint``'s extension, e.g. ``a1b2c3-hero.png``."""
        cleaned = _SAFE.sub("-", Path(hint).name).strip("-.") or "file"
        return f"{secrets.token_hex(6)}-{cleaned[-80:]}"

    def put(self, hint: str, data: bytes, content_type: str | None = None) -> StoredFile:
        """Store ``data`` under a fresh name derived from ``hint``."""
        name = self.new_name(hint)
        path = self.root / name
        tmp = path.with_name(f".{name}.part")
        tmp.write_bytes(data)
        tmp.replace(path)
        return StoredFile(name, path, len(data), content_type or _guess(name))

    def path_for(self, name: str) -> Path:
        """Where a file called ``name`` lives (or will), after checking the name is safe.

        Raises:
            KeyError: ``name`` is not a plain file name.
        """
        if not _NAME.match(name):
            raise KeyError(name)
        return self.root / name

    def get(self, name: str) -> StoredFile | None:
        """The stored file called ``name``, or None when there is none."""
        try:
            path = self.path_for(name)
        except KeyError:
            return None
        with self._lock:
            if not path.is_file():
                return None
            return StoredFile(name, path, path.stat().st_size, _guess(name))


def _guess(name: str) -> str:
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def parse_multipart(content_type: str, body: bytes) -> list[UploadedPart]:
    """Split a ``multipart/form-data`` body into its file parts (fields without a file too).

    Uses :mod:`email` rather than the deprecated ``cgi`` module.

    Args:
        content_type: the request's ``Content-Type`` header, with its boundary.
        body: the request body.

    Returns:
        Every part, in order; empty when the body is not multipart.
    """
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    message = BytesParser(_class=EmailMessage, policy=HTTP).parsebytes(head + body)
    if not message.is_multipart():
        return []
    parts: list[UploadedPart] = []
    for part in message.iter_parts():
        field = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        parts.append(
            UploadedPart(
                field=str(field or ""),
                filename=str(part.get_filename() or ""),
                content_type=part.get_content_type(),
                data=payload if isinstance(payload, bytes) else b"",
            )
        )
    return parts


def receive_upload(
    store: FileStore, content_type: str, body: bytes, base_url: str
) -> dict[str, Any] | ValidationFailure:
    """Store the ``file`` part of a ``POST /v1/files/upload`` and describe it.

    Args:
        store: where the file goes.
        content_type: the request's ``Content-Type``.
        body: the request body.
        base_url: the server's base URL, for the file's ``url``.

    Returns:
        ``{"id", "path", "url", "filename", "bytes", "content_type"}``: ``path`` is the
        storage path, ``url`` serves the bytes without auth; or why the upload was refused.
    """
    parts = [p for p in parse_multipart(content_type, body) if p.filename or p.field == "file"]
    if not content_type.startswith("multipart/form-data") or not parts:
        msg = "Send the file as multipart/form-data in a field named 'file'."
        return ValidationFailure(400, "invalid_request", msg, "file")
    part = next((p for p in parts if p.field == "file"), parts[0])
    if not part.data:
        return ValidationFailure(422, "invalid_parameter", "The uploaded file is empty.", "file")
    stored = store.put(part.filename or "upload.bin", part.data, part.content_type)
    return {
        "id": f"file_{stored.name.split('-', 1)[0]}",
        "path": f"uploads/{stored.name}",
        "url": f"{base_url}/files/{stored.name}",
        "filename": part.filename,
        "bytes": stored.size,
        "content_type": stored.content_type,
    }
