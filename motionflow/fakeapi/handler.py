"""The fake server's routes and JSON answers (its HTTP server: :mod:`motionflow.loopback`)."""

from __future__ import annotations

import json
import math
from typing import Any

from motionflow.fakeapi.faults import (
    FILE_PATH,
    JOB_PATH,
    MODEL_PATH,
    SUBMIT_PATH,
    UPLOAD_PATH,
    USAGE_PATH,
)
from motionflow.loopback import Response

__all__ = [
    "UNKNOWN_PATH",
    "json_response",
    "route",
    "seconds_header",
]

UNKNOWN_PATH = "<unknown>"
"""The template requests that match no route are counted under."""


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    """A JSON response."""
    data = json.dumps(payload).encode()
    return Response(status, data, {"Content-Type": "application/json", **(headers or {})})


def route(method: str, path: str) -> tuple[str, str]:
    """(path template, its variable segment or "") for a request; UNKNOWN_PATH if none fits."""
    parts = path.split("/")
    if method == "POST" and path in {SUBMIT_PATH, UPLOAD_PATH}:
        return path, ""
    if method != "GET":
        return UNKNOWN_PATH, ""
    if path == USAGE_PATH:
        return USAGE_PATH, ""
    if len(parts) == 4 and parts[1:3] == ["v1", "jobs"] and parts[3]:
        return JOB_PATH, parts[3]
    if len(parts) == 4 and parts[1:3] == ["v1", "models"] and parts[3]:
        return MODEL_PATH, parts[3]
    if len(parts) == 3 and parts[1] == "files" and parts[2]:
        return FILE_PATH, parts[2]
    return UNKNOWN_PATH, ""


def seconds_header(seconds: float) -> str:
    """A ``Retry-After`` value: whole seconds from 1 s up, a decimal below (fast tests)."""
    if seconds >= 1:
        return str(math.ceil(seconds))
    return f"{max(seconds, 0.001):.3f}"
