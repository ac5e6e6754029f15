"""An S3-compatible bucket seen as a small object store: the transport of the remote cache.

``s3://bucket/prefix`` names the store; an S3-compatible endpoint (MinIO, Cloudflare R2, ...) is
given as ``?endpoint=http://host:9000`` in the URL, as ``endpoint_url`` in the project's
``motionflow.toml``, or by boto3's own ``AWS_ENDPOINT_URL_S3``. Credentials come from boto3's
usual chain and never appear in a message.

What the remote cache needs, and nothing more: whole-object reads with a size bound, streamed
downloads and uploads (an object appears whole or not at all, as S3 guarantees), conditional
writes (``If-None-Match: *`` to create only, ``If-Match: <etag>`` to replace only what was
read), listing, and the service's clock (the ``Date`` of its answers), so leases age by one
clock, not by the clocks of the machines sharing it.

boto3 is an optional dependency (``pip install "motionflow[s3]"``), imported on first use; it
is synchronous and thread-safe, so callers run it in threads.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from motionflow.errors import CacheError, UsageError
from motionflow.s3client import ABSENT, credentials_fix, make_client

__all__ = ["Conflict", "ObjectInfo", "ObjectStore", "RemoteError", "parse_remote"]

_INSTALL = 'pip install "motionflow[s3]"'
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")
_CONFLICT = frozenset({"412", "PreconditionFailed", "409", "ConditionalRequestConflict"})
_FIX_WHERE = "cache.remote in motionflow.toml, --remote or MOTIONFLOW_REMOTE"


class RemoteError(CacheError):
    """The remote cache cannot be used as asked (missing bucket, denied, unreachable)."""


class Conflict(Exception):  # noqa: N818 - a condition, not a failure
    """A conditional write lost: the object exists (``If-None-Match``) or changed (``If-Match``)."""


@dataclass(frozen=True)
class ObjectInfo:
    """What the store says about an object: its ETag, size and last change (store's clock)."""

    etag: str
    size: int
    modified: datetime


@dataclass(frozen=True)
class RemoteSpec:
    """A parsed ``s3://bucket/prefix`` with its endpoint and region."""

    url: str
    bucket: str
    prefix: str
    endpoint_url: str | None = None
    region: str | None = None


def parse_remote(
    url: str, *, endpoint_url: str | None = None, region: str | None = None
) -> RemoteSpec:
    """Parse ``s3://bucket[/prefix][?endpoint=URL&region=NAME]``.

    Raises:
        UsageError: not an ``s3://`` URL, a bucket name S3 would refuse, an endpoint that is
            not http(s), or an unknown option.
    """
    text = url.strip()
    parts = urlsplit(text)
    if parts.scheme != "s3" or not parts.netloc:
        msg = (
            f"the remote cache {text!r} is not an s3:// URL; write it as "
            f"s3://BUCKET/PREFIX (in {_FIX_WHERE})"
        )
        raise UsageError(msg)
    bucket = parts.netloc
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        msg = (
            f"the remote cache {text!r} names the bucket {bucket!r}, which S3 does not allow "
            "(3-63 lower-case letters, digits, dots and hyphens); fix it in " + _FIX_WHERE
        )
        raise UsageError(msg)
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - {"endpoint", "region"})
    if unknown or parts.fragment:
        msg = (
            f"the remote cache {text!r} has the option(s) {', '.join(unknown) or '#'}; only "
            "?endpoint=URL and &region=NAME are understood"
        )
        raise UsageError(msg)
    endpoint = query.get("endpoint", [endpoint_url or ""])[-1].strip() or None
    if endpoint is not None and urlsplit(endpoint).scheme not in {"http", "https"}:
        msg = (
            f"the remote cache's endpoint {endpoint!r} is not an http(s) URL; write it as "
            "http://HOST:PORT (MinIO) or https://ACCOUNT.r2.cloudflarestorage.com (R2)"
        )
        raise UsageError(msg)
    segments = [s for s in parts.path.split("/") if s]
    if any(s in {".", ".."} for s in segments):
        msg = f"the remote cache {text!r} has '.' or '..' in its prefix; name a plain folder"
        raise UsageError(msg)
    prefix = "".join(s + "/" for s in segments)
    shown = f"s3://{bucket}/{prefix}"
    chosen_region = query.get("region", [region or ""])[-1].strip() or None
    return RemoteSpec(shown, bucket, prefix, endpoint, chosen_region)


def _retries() -> dict[str, Any]:
    """boto3's retries: ``standard`` mode, 3 attempts, unless ``AWS_RETRY_MODE`` /
    ``AWS_MAX_ATTEMPTS`` (boto3's own settings) say otherwise."""
    retries: dict[str, Any] = {"mode": os.environ.get("AWS_RETRY_MODE", "").strip() or "standard"}
    attempts = os.environ.get("AWS_MAX_ATTEMPTS", "").strip()
    retries["max_attempts"] = int(attempts) if attempts.isdigit() and int(attempts) > 0 else 3
    return retries


def _missing_boto3(cause: str = "") -> UsageError:
    detail = f" ({cause})" if cause else ""
    msg = f"the remote cache needs boto3, which is not installed{detail}; run: {_INSTALL}"
    return UsageError(msg)


def _info(head: dict[str, Any]) -> ObjectInfo:
    modified = head.get("LastModified")
    if not isinstance(modified, datetime):
        modified = datetime.now(UTC)
    return ObjectInfo(str(head.get("ETag", "")), int(head.get("ContentLength", 0) or 0), modified)


class ObjectStore:
    """Objects under one bucket and prefix; names are relative to the prefix.

    Args:
        spec: where the objects live (:func:`parse_remote`).
        client_factory: builds the S3 client from ``boto3.client``'s keyword arguments
            (tests pass one; default a private ``boto3.session.Session().client``).

    Raises:
        UsageError: boto3 is not installed.
    """

    def __init__(self, spec: RemoteSpec, *, client_factory: Callable[..., Any] | None = None):
        if importlib.util.find_spec("boto3") is None:
            raise _missing_boto3()
        self.spec = spec
        self.url = spec.url
        self._factory = client_factory
        self._client: Any = None
        self._errors: Any = None
        self._lock = threading.Lock()
        self._server_date: datetime | None = None

    def __repr__(self) -> str:
        return f"ObjectStore({self.url!r})"

    def where(self) -> str:
        """The store, for messages: ``s3://bucket/prefix/ (at http://host:port)``."""
        at = f" at {self.spec.endpoint_url}" if self.spec.endpoint_url else ""
        return f"{self.url}{at}"

    # -- the client ----------------------------------------------------------------------------
    def _get(self) -> Any:
        with self._lock:
            if self._client is not None:
                return self._client
            try:
                client, errors = make_client(
                    self._factory,
                    endpoint_url=self.spec.endpoint_url,
                    region=self.spec.region,
                    connect_timeout=5,
                    read_timeout=60,
                    retries=_retries(),
                    max_pool_connections=32,
                )
            except ImportError as exc:
                raise _missing_boto3(str(exc)) from exc
            except ValueError as exc:
                msg = f"cannot make an S3 client for {self.where()}: {exc}; fix {_FIX_WHERE}"
                raise RemoteError(msg) from exc
            client.meta.events.register("after-call.s3", self._note_date)
            self._errors = errors
            self._client = client
            return client

    def _note_date(self, http_response: Any = None, **_: Any) -> None:
        date = getattr(http_response, "headers", {}).get("Date") if http_response else None
        if date:
            with contextlib.suppress(TypeError, ValueError):  # a store sending no valid Date
                self._server_date = parsedate_to_datetime(date)

    def server_now(self) -> datetime:
        """The store's clock, as of its last answer (asks it with a cheap request if none yet)."""
        if self._server_date is None:
            self.head(".clock")
        return self._server_date or datetime.now(UTC)

    def close(self) -> None:
        """Close the connection pool, if one was made."""
        client, self._client = self._client, None
        close = getattr(client, "close", None)
        if callable(close):
            close()

    def _key(self, name: str) -> str:
        return self.spec.prefix + name

    def _code(self, exc: Any) -> str:
        return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))

    def _failure(self, exc: BaseException, doing: str) -> RemoteError:
        """A located message for a failed request, with the fix; never the credentials."""
        what = f"cannot {doing} on the remote cache {self.where()}"
        errors = self._errors
        if errors is not None and isinstance(exc, errors.ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", "")) or "unknown"
            detail = str(error.get("Message", "")).strip()
            if code == "NoSuchBucket":
                fix = (
                    f"the bucket {self.spec.bucket!r} does not exist; create it or fix {_FIX_WHERE}"
                )
            elif (
                found := credentials_fix(
                    code,
                    permissions=(
                        "s3:GetObject, s3:PutObject and s3:ListBucket on "
                        f"{self.spec.bucket}/{self.spec.prefix}*"
                    ),
                    region_fix="add ?region=NAME to the remote's URL",
                )
            ) is not None:
                fix = found
            else:
                fix = "check the bucket and the endpoint, then retry"
            reason = f"{code}: {detail}" if detail else code
            return RemoteError(f"{what}: {reason}; {fix}")
        if errors is not None and isinstance(exc, errors.NoCredentialsError):
            return RemoteError(
                f"{what}: no credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or "
                "AWS_PROFILE), or use --no-remote to work without the shared cache"
            )
        if errors is not None and isinstance(exc, errors.BotoCoreError):
            return RemoteError(
                f"{what}: {type(exc).__name__}: the store did not answer; check that "
                f"{self.spec.endpoint_url or 'AWS S3'} is reachable, or use --no-remote"
            )
        return RemoteError(f"{what}: {type(exc).__name__}: {exc}")

    def _call(self, doing: str, method: str, **kwargs: Any) -> Any:
        client = self._get()
        try:
            return getattr(client, method)(Bucket=self.spec.bucket, **kwargs)
        except Exception as exc:
            if self._errors is not None and isinstance(exc, self._errors.ClientError):
                code = self._code(exc)
                if code in ABSENT:
                    raise FileNotFoundError(kwargs.get("Key", "")) from None
                if code in _CONFLICT:
                    raise Conflict(kwargs.get("Key", "")) from None
            if isinstance(exc, (FileNotFoundError, Conflict)):
                raise
            raise self._failure(exc, doing) from exc

    # -- objects -------------------------------------------------------------------------------
    def head(self, name: str) -> ObjectInfo | None:
        """The object's ETag, size and time of change, or None when absent."""
        try:
            return _info(self._call(f"look up {name}", "head_object", Key=self._key(name)))
        except FileNotFoundError:
            return None

    def get(self, name: str, *, max_bytes: int) -> tuple[bytes, ObjectInfo] | None:
        """The whole object (at most ``max_bytes``) and what the store says of it, or None.

        Raises:
            RemoteError: the object is bigger than ``max_bytes``, or the store failed.
        """
        try:
            answer = self._call(f"read {name}", "get_object", Key=self._key(name))
        except FileNotFoundError:
            return None
        info = _info(answer)
        body = answer["Body"]
        try:
            if info.size > max_bytes:
                msg = (
                    f"{self.where()}{name} holds {info.size} bytes, more than the {max_bytes} "
                    "such an object may have; it is not used (remove it from the bucket)"
                )
                raise RemoteError(msg)
            data: bytes = body.read(max_bytes + 1)
        finally:
            body.close()
        if len(data) > max_bytes:
            msg = f"{self.where()}{name} is longer than {max_bytes} bytes; it is not used"
            raise RemoteError(msg)
        return data, info

    def put(
        self, name: str, data: bytes, *, if_none_match: bool = False, if_match: str | None = None
    ) -> str:
        """Write a small object; returns its ETag.

        Raises:
            Conflict: ``if_none_match`` and the object exists, or ``if_match`` and it changed.
            RemoteError: the store failed.
        """
        extra: dict[str, Any] = {}
        if if_none_match:
            extra["IfNoneMatch"] = "*"
        if if_match is not None:
            extra["IfMatch"] = if_match
        answer = self._call(
            f"write {name}",
            "put_object",
            Key=self._key(name),
            Body=data,
            ContentType="application/json",
            **extra,
        )
        return str(answer.get("ETag", ""))

    def upload(self, name: str, path: Path) -> None:
        """Upload a file (multipart when big); the object appears only once complete."""
        client = self._get()
        try:
            client.upload_file(str(path), self.spec.bucket, self._key(name))
        except Exception as exc:
            raise self._failure(exc, f"upload {name}") from exc

    def download(self, name: str, dest: Path, *, max_bytes: int) -> int:
        """Stream the object into ``dest`` (created), at most ``max_bytes``; returns the size.

        Raises:
            FileNotFoundError: the object is absent.
            RemoteError: it is too big, or the store failed.
        """
        answer = self._call(f"read {name}", "get_object", Key=self._key(name))
        body = answer["Body"]
        size = 0
        try:
            with dest.open("wb") as out:
                for chunk in body.iter_chunks(1 << 20):
                    size += len(chunk)
                    if size > max_bytes:
                        msg = f"{self.where()}{name} is longer than {max_bytes} bytes; not used"
                        raise RemoteError(msg)
                    out.write(chunk)
        except (OSError, RemoteError):
            raise
        except Exception as exc:
            raise self._failure(exc, f"read {name}") from exc
        finally:
            body.close()
        return size

    def delete(self, name: str) -> None:
        """Remove an object (absent is fine)."""
        with contextlib.suppress(FileNotFoundError):
            self._call(f"remove {name}", "delete_object", Key=self._key(name))

    def list(self, folder: str) -> Iterator[tuple[str, int]]:
        """``(name, size)`` of every object under ``folder`` (relative names), page by page."""
        client = self._get()
        paginator = client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.spec.bucket, Prefix=self._key(folder)):
                for item in page.get("Contents", []):
                    yield str(item["Key"])[len(self.spec.prefix) :], int(item.get("Size", 0))
        except Exception as exc:
            raise self._failure(exc, f"list {folder}") from exc
