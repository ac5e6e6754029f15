"""The s3 publisher against a real S3 endpoint: moto in server mode on 127.0.0.1, over HTTP."""

from __future__ import annotations

import asyncio
import math
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("moto", reason="install the dev extra: pip install -e '.[dev]'")

import boto3
from botocore.config import Config
from s3rig import SECRET

from motionflow.errors import PublishError, UsageError
from motionflow.publish.base import PublishedUrls
from motionflow.publish.s3 import S3Publisher
from motionflow.stages.base import FileArtifact


def _artifact(tmp_path: Path, data: bytes, ext: str = ".mp4") -> FileArtifact:
    path = tmp_path / f"clip-{uuid.uuid4().hex[:6]}{ext}"
    path.write_bytes(data)
    # The publisher only uses the hex part as a name; any unique hex stands in for blake3.
    return FileArtifact(f"blake3:{uuid.uuid5(uuid.NAMESPACE_OID, data.hex()).hex * 2}", path, ext)


class _Counting:
    """Wraps a boto3 client and counts the calls the publisher makes."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            return attr(*args, **kwargs)

        return counted


def _counting_factory(
    extra: Config | None = None,
) -> tuple[Callable[..., Any], list[_Counting]]:
    made: list[_Counting] = []

    def factory(**kwargs: Any) -> Any:
        if extra is not None:
            kwargs["config"] = kwargs["config"].merge(extra)
        made.append(_Counting(boto3.session.Session().client(**kwargs)))
        return made[-1]

    return factory, made


class _Memo:
    """A dict-backed stand-in for the cache's key-value table."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, name: str) -> Any:
        return self.data.get(name)

    def set(self, name: str, value: Any) -> None:
        self.data[name] = value


def _get(url: str) -> httpx.Response:
    with httpx.Client(trust_env=False, timeout=10) as client:  # no credentials, no proxies
        return client.get(url)


def _publish(publisher: S3Publisher, artifact: FileArtifact) -> Any:
    async def go() -> Any:
        try:
            return await publisher.publish(artifact)
        finally:
            await publisher.aclose()

    return asyncio.run(go())


def test_presigned_url_serves_the_exact_bytes(endpoint: str, bucket: str, tmp_path: Path) -> None:
    data = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4
    artifact = _artifact(tmp_path, data, ".MP4")
    publisher = S3Publisher(bucket=bucket, endpoint_url=endpoint, region="us-east-1")
    assert publisher.kind == "s3"
    assert publisher.identity == f"s3:{endpoint}/{bucket}/motionflow/"

    before = time.time()
    done = _publish(publisher, artifact)

    hexdigest = artifact.digest.split(":", 1)[1]
    assert done.url.startswith(f"{endpoint}/{bucket}/motionflow/{hexdigest}.mp4?")
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in done.url  # SigV4
    assert "X-Amz-Expires=86400" in done.url
    assert SECRET not in done.url
    assert done.expires_at is not None
    assert math.isclose(done.expires_at, before + 24 * 3600, abs_tol=30)

    response = _get(done.url)
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-type"] == "video/mp4"

    # Without the signature the object is not public.
    assert _get(done.url.split("?", 1)[0]).status_code == 403


def test_same_digest_is_uploaded_once(endpoint: str, bucket: str, tmp_path: Path) -> None:
    artifact = _artifact(tmp_path, b"\x89PNG\r\n\x1a\n" + b"pixels" * 100, ".png")
    factory, clients = _counting_factory()

    first = S3Publisher(bucket=bucket, endpoint_url=endpoint, client_factory=factory)
    a = _publish(first, artifact)
    b = _publish(first, artifact)
    # Another publisher (another cache, another machine) finds the object by its key.
    other = S3Publisher(bucket=bucket, endpoint_url=endpoint, client_factory=factory)
    c = _publish(other, artifact)

    assert sum(client.calls.get("put_object", 0) for client in clients) == 1
    assert sum(client.calls.get("head_object", 0) for client in clients) == 3
    for done in (a, b, c):
        response = _get(done.url)
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/png"
        assert response.content == artifact.path.read_bytes()

    listed = boto3.client("s3", endpoint_url=endpoint).list_object_versions(Bucket=bucket)
    assert [v["Key"] for v in listed.get("Versions", [])] == [first.key(artifact)]


def test_published_urls_remembers_by_digest(endpoint: str, bucket: str, tmp_path: Path) -> None:
    artifact = _artifact(tmp_path, b"reference image bytes", ".jpg")
    memo = _Memo()
    factory, clients = _counting_factory()

    async def go() -> tuple[PublishedUrls, PublishedUrls, list[str]]:
        publisher = S3Publisher(bucket=bucket, endpoint_url=endpoint, client_factory=factory)
        urls = PublishedUrls(publisher, memo)
        got = [await urls.url(artifact) for _ in range(3)]
        # A later run with the same cache: remembered, no request at all.
        again = PublishedUrls(
            S3Publisher(bucket=bucket, endpoint_url=endpoint, client_factory=factory), memo
        )
        got.append(await again.url(artifact))
        await publisher.aclose()
        await again.publisher.aclose()
        return urls, again, got

    urls, again, got = asyncio.run(go())
    assert urls.published == 1
    assert again.published == 0
    assert len(set(got)) == 1
    assert len(clients) == 1  # the second publisher never even made a client
    assert clients[0].calls.get("put_object") == 1
    assert _get(got[0]).content == b"reference image bytes"
    (entry,) = memo.data.values()
    assert entry["url"] == got[0]


def test_short_lived_urls_are_not_remembered(endpoint: str, bucket: str, tmp_path: Path) -> None:
    artifact = _artifact(tmp_path, b"short lived", ".mp4")
    factory, clients = _counting_factory()
    publisher = S3Publisher(
        bucket=bucket, endpoint_url=endpoint, expires_hours=1, client_factory=factory
    )

    async def go() -> PublishedUrls:
        urls = PublishedUrls(publisher, _Memo())
        await urls.url(artifact)
        await urls.url(artifact)
        await publisher.aclose()
        return urls

    urls = asyncio.run(go())
    assert urls.published == 2  # an hour is less than MIN_VALIDITY: presigned again...
    assert sum(c.calls.get("put_object", 0) for c in clients) == 1  # ...but uploaded once


def test_missing_bucket_names_the_bucket(endpoint: str, tmp_path: Path) -> None:
    artifact = _artifact(tmp_path, b"no bucket for me", ".mp4")
    publisher = S3Publisher(bucket="mf-no-such-bucket", endpoint_url=endpoint)
    with pytest.raises(PublishError) as info:
        _publish(publisher, artifact)
    message = str(info.value)
    assert "'mf-no-such-bucket'" in message
    assert "NoSuchBucket" in message
    assert str(artifact.path) in message
    assert "publish.bucket" in message
    assert SECRET not in message


def test_unreachable_endpoint(endpoint: str, tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    artifact = _artifact(tmp_path, b"nowhere to go", ".mp4")
    factory, _ = _counting_factory(Config(retries={"total_max_attempts": 1}))
    publisher = S3Publisher(bucket="mf-bucket", endpoint_url=closed, client_factory=factory)
    with pytest.raises(PublishError) as info:
        _publish(publisher, artifact)
    message = str(info.value)
    assert closed in message
    assert "publish.endpoint_url" in message
    assert str(artifact.path) in message
    assert SECRET not in message


def test_missing_credentials(
    endpoint: str, bucket: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    artifact = _artifact(tmp_path, b"who am i", ".mp4")
    with pytest.raises(PublishError) as info:
        _publish(S3Publisher(bucket=bucket, endpoint_url=endpoint), artifact)
    assert "AWS_ACCESS_KEY_ID" in str(info.value)
    assert repr(bucket) in str(info.value)


def test_access_denied_is_explained(endpoint: str, tmp_path: Path) -> None:
    from botocore.exceptions import ClientError

    class Denying:
        def head_object(self, **_: Any) -> Any:
            raise ClientError({"Error": {"Code": "403", "Message": "Forbidden"}}, "HeadObject")

        def put_object(self, **_: Any) -> Any:
            raise ClientError(
                {"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "PutObject"
            )

    artifact = _artifact(tmp_path, b"locked out", ".mp4")
    publisher = S3Publisher(
        bucket="mf-locked", endpoint_url=endpoint, client_factory=lambda **_: Denying()
    )
    with pytest.raises(PublishError) as info:
        _publish(publisher, artifact)
    message = str(info.value)
    assert "AccessDenied" in message
    assert "s3:PutObject" in message
    assert "'mf-locked'" in message
    assert SECRET not in message


@pytest.mark.parametrize("hours", [0, -1, 168.01, 1000, math.nan, math.inf])
def test_bad_expires_hours(hours: float) -> None:
    with pytest.raises(UsageError, match="expires_hours"):
        S3Publisher(bucket="mf-bucket", expires_hours=hours)


def test_seven_days_is_allowed() -> None:
    assert S3Publisher(bucket="mf-bucket", expires_hours=168).expires_seconds == 7 * 24 * 3600


def test_missing_boto3_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(UsageError, match=r'pip install "motionflow\[s3\]"'):
        S3Publisher(bucket="mf-bucket")
