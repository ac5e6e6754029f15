"""A tiny HTTP file server on 127.0.0.1: the ``loopback`` publisher's transport and test helper."""

from __future__ import annotations

import secrets
import socket
import threading
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import unquote, urlsplit

from motionflow.loopback import Handler, LoopbackServer, Response

__all__ = ["FileServer"]


class FileServer:
    """Serves files over HTTP on loopback, from registered paths and/or a root folder.

    Every URL carries a random token, so only URLs this object handed out resolve.
    Nothing is logged; unknown paths answer 404.

    Args:
        root: serve every file under this folder at ``/<relative path>`` (no token), as a
            plain static site would; None serves registered files only.
    """

    def __init__(self, root: Path | None = None) -> None:
        self._root = root.resolve() if root is not None else None
        self._token = secrets.token_urlsafe(12)
        self._files: dict[str, Path] = {}
        self._lock = threading.Lock()
        self._httpd: LoopbackServer | None = None
        self.url = ""
        self.requests = 0
        """How many requests were answered (tests count fetches with it)."""

    def start(self) -> str:
        """Bind a free port on 127.0.0.1, serve in a daemon thread, return the base URL."""
        if self._httpd is None:
            httpd = LoopbackServer(("127.0.0.1", 0), Handler)
            httpd.app = self
            self._httpd = httpd
            self.url = f"http://127.0.0.1:{httpd.server_address[1]}"
            thread = threading.Thread(
                target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            )
            thread.start()
        return self.url

    def stop(self) -> None:
        """Stop serving."""
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def add(self, path: Path, name: str) -> str:
        """Serve ``path`` and return its URL (``name`` is the last URL segment)."""
        base = self.start()
        with self._lock:
            self._files[name] = path
        return f"{base}/{self._token}/{name}"

    # -- the App protocol of LoopbackServer ---------------------------------------------------
    def track(self, conn: socket.socket, *, add: bool) -> None:
        """Connections need no tracking here."""

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Response:
        """Answer a GET with the file's bytes, anything else with 404/405."""
        del headers, body
        with self._lock:
            self.requests += 1
        if method != "GET":
            return Response(405, b"method not allowed\n")
        path = self._resolve(unquote(urlsplit(target).path))
        if path is None:
            return Response(404, b"not found\n")
        try:
            data = path.read_bytes()
        except OSError:
            return Response(404, b"not found\n")
        from motionflow.publish.base import content_type

        return Response(200, data, {"Content-Type": content_type(path.suffix)})

    def _resolve(self, path: str) -> Path | None:
        parts = path.strip("/").split("/")
        if len(parts) == 2 and parts[0] == self._token:
            with self._lock:
                return self._files.get(parts[1])
        if self._root is not None:
            candidate = (self._root / path.lstrip("/")).resolve()
            if candidate.is_relative_to(self._root) and candidate.is_file():
                return candidate
        return None
