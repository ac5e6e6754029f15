"""A small threading HTTP server on loopback that hands each request to an app object."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, Protocol

__all__ = ["App", "Handler", "LoopbackServer", "Response"]


@dataclass
class Response:
    """What a route answers; an ``action`` other than ``send`` breaks the connection.

    Attributes:
        status: the HTTP status.
        body: the body bytes.
        headers: response headers (Content-Length is added when sending).
        action: ``send``; ``reset`` (no response, TCP reset); ``truncated`` (headers promise
            more body than is sent); ``garbage`` (no valid status line).
    """

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    action: Literal["send", "reset", "truncated", "garbage"] = "send"


class App(Protocol):
    """What the HTTP layer calls: the request handling of a server (the fake API, a file server)."""

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Response:
        """Answer one request; ``headers`` have lower-case names."""

    def track(self, conn: socket.socket, *, add: bool) -> None:
        """Record an open (``add``) or closed connection, so ``stop`` can drop it."""


class LoopbackServer(ThreadingHTTPServer):
    """A threading HTTP server that hands every request to an :class:`App`, silently."""

    daemon_threads = True
    app: App

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore the error: a client hanging up mid-response is normal; never print."""


class Handler(BaseHTTPRequestHandler):
    """One thread per connection; HTTP/1.1 keep-alive; no logging."""

    protocol_version = "HTTP/1.1"
    timeout = 60
    server: LoopbackServer

    def setup(self) -> None:
        """Register the connection with the app."""
        super().setup()
        # Headers and body go out as two writes: without NODELAY, delayed ACKs add 40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.app.track(self.connection, add=True)

    def finish(self) -> None:
        """Unregister the connection."""
        try:
            super().finish()
        finally:
            self.server.app.track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        """Log nothing: the package never prints."""

    def do_GET(self) -> None:
        """Answer a GET."""
        self._dispatch("GET")

    def do_POST(self) -> None:
        """Answer a POST."""
        self._dispatch("POST")

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self, method: str) -> None:
        # The body is always read first: the request is complete before any fault fires.
        body = self._read_body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        response = self.server.app.handle(method, self.path, headers, body)
        if response.action == "send":
            self.send_response(response.status)
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            self.wfile.write(response.body)
            return
        self.close_connection = True
        if response.action == "truncated":
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 4096\r\n"
            self.wfile.write(head + b'\r\n{"job_id": "')
        elif response.action == "garbage":
            self.wfile.write(b"\x00\x15\x03 this is not HTTP \xff\r\n\r\n")
        else:
            # SO_LINGER 0: close() sends a TCP reset, not an orderly FIN.
            linger = struct.pack("ii", 1, 0)
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            self.connection.close()
