"""The ``s3`` publisher: an S3-compatible bucket, handing out presigned GET URLs.

Files are stored content-addressed (``<prefix><hex digest><ext>``), so the same bytes are
uploaded once per bucket and prefix, whichever cache, machine or run asks for them: a HEAD
request comes first and the PUT happens only if the object is absent. The bucket can stay
private; the service fetches each file with a SigV4 presigned GET URL that expires after
``expires_hours``.

boto3 is an optional dependency (``pip install "motionflow[s3]"``). It is imported on the
first publish, so a run that publishes nothing does not pay for the import. boto3 is
synchronous; each publish runs in a worker thread (:func:`asyncio.to_thread`).
"""

from __future__ import annotations

import asyncio
import importlib.util
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from motionflow.artifacts import FileArtifact
from motionflow.errors import PublishError, UsageError
from motionflow.publish.base import Published, content_type
from motionflow.s3client import ABSENT, credentials_fix, make_client

__all__ = ["MAX_EXPIRES_HOURS", "S3Publisher"]

MAX_EXPIRES_HOURS = 168.0
"""The longest a SigV4 presigned URL can live: 7 days."""

_INSTALL = 'pip install "motionflow[s3]"'


def _missing_boto3(cause: str = "") -> UsageError:
    detail = f" ({cause})" if cause else ""
    msg = f"publish: s3 needs boto3, which is not installed{detail}; run: {_INSTALL}"
    return UsageError(msg)


class S3Publisher:
    """Uploads files to an S3-compatible bucket and returns presigned GET URLs.

    Credentials come from boto3's usual chain (``AWS_ACCESS_KEY_ID`` and friends,
    ``AWS_PROFILE``, ``~/.aws/credentials``, an instance role, ...); motionflow never sees
    or stores them, and no error message includes them.

    Args:
        bucket: the bucket name; it must exist.
        prefix: the key prefix inside the bucket (include a trailing ``/`` for a folder).
        endpoint_url: an S3-compatible endpoint (MinIO, Cloudflare R2, ...), or None for AWS.
            With an endpoint, path-style addressing is used (``<endpoint>/<bucket>/<key>``).
        region: the bucket's region (``auto`` for R2), or None for boto3's default.
        expires_hours: how long each presigned URL works, in (0, 168] hours.
        client_factory: builds the S3 client; called with the keyword arguments of
            ``boto3.client`` (``service_name``, ``endpoint_url``, ``region_name``,
            ``config``). Defaults to a private ``boto3.session.Session().client``.

    Raises:
        UsageError: ``expires_hours`` is out of range, or boto3 is not installed.
    """

    kind = "s3"

    def __init__(
        self,
        *,
        bucket: str,
        prefix: str = "motionflow/",
        endpoint_url: str | None = None,
        region: str | None = None,
        expires_hours: float = 24.0,
        client_factory: Callable[..., Any] | None = None,
    ) -> None:
        if not (isinstance(expires_hours, int | float) and 0 < expires_hours <= MAX_EXPIRES_HOURS):
            msg = (
                f"publish.expires_hours is {expires_hours!r}; presigned S3 URLs can live more "
                f"than 0 and at most {MAX_EXPIRES_HOURS:g} hours (7 days, the SigV4 limit)"
            )
            raise UsageError(msg)
        if importlib.util.find_spec("boto3") is None:
            raise _missing_boto3()
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint_url = endpoint_url
        self.region = region
        self.expires_seconds = max(1, math.floor(expires_hours * 3600))
        self.identity = f"s3:{endpoint_url or 'aws'}/{bucket}/{prefix}"
        self.serve_hint = (
            f"check that {self._where()} is reachable at that address and serves presigned GET "
            "URLs (publish.endpoint_url, publish.region, the bucket's policy)"
        )
        self._factory = client_factory
        self._client: Any = None
        self._errors: Any = None  # the botocore.exceptions module, once imported
        self._lock = threading.Lock()

    def key(self, artifact: FileArtifact) -> str:
        """The object key ``artifact`` is stored under: ``<prefix><hex digest><ext>``."""
        return f"{self.prefix}{artifact.digest.split(':', 1)[-1]}{artifact.ext.lower()}"

    async def publish(self, artifact: FileArtifact) -> Published:
        """Upload ``artifact`` unless the bucket has it, and return a presigned GET URL.

        Raises:
            PublishError: the bucket is missing or unreachable, the credentials are missing
                or lack permission, or the file cannot be read; nothing was submitted.
            UsageError: boto3 cannot be imported.
        """
        return await asyncio.to_thread(self._publish, artifact)

    async def aclose(self) -> None:
        """Close the client's connection pool, if one was made."""
        client, self._client = self._client, None
        close = getattr(client, "close", None)
        if callable(close):
            await asyncio.to_thread(close)

    def _where(self) -> str:
        return f"bucket {self.bucket!r} at {self.endpoint_url or 'AWS S3'}"

    def _get_client(self) -> Any:
        with self._lock:
            if self._client is not None:
                return self._client
            try:
                client, errors = make_client(
                    self._factory, endpoint_url=self.endpoint_url, region=self.region
                )
            except ImportError as exc:
                raise _missing_boto3(str(exc)) from exc
            except ValueError as exc:  # botocore rejects a malformed endpoint or region
                msg = (
                    f"cannot make an S3 client for {self._where()}: {exc}; fix "
                    "publish.endpoint_url or publish.region. Nothing was submitted"
                )
                raise PublishError(msg) from exc
            self._errors = errors
            self._client = client
            return client

    def _publish(self, artifact: FileArtifact) -> Published:
        client = self._get_client()
        errors = self._errors
        key = self.key(artifact)
        try:
            if not self._has(client, key, artifact):
                with artifact.path.open("rb") as body:
                    client.put_object(
                        Bucket=self.bucket,
                        Key=key,
                        Body=body,
                        ContentType=content_type(artifact.ext),
                    )
            now = time.time()
            url = client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": key},
                ExpiresIn=self.expires_seconds,
            )
        except errors.ClientError as exc:
            raise self._client_error(exc, artifact, key) from exc
        except (errors.NoCredentialsError, errors.PartialCredentialsError) as exc:
            msg = (
                f"cannot publish {str(artifact.path)!r} to {self._where()}: no usable AWS "
                f"credentials ({type(exc).__name__}); set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, or ~/.aws/credentials). "
                "Nothing was submitted"
            )
            raise PublishError(msg) from exc
        except errors.ConnectionError as exc:
            msg = (
                f"cannot publish {str(artifact.path)!r}: cannot reach {self._where()} "
                f"({type(exc).__name__}); check publish.endpoint_url and the network. "
                "Nothing was submitted"
            )
            raise PublishError(msg) from exc
        except errors.BotoCoreError as exc:
            msg = (
                f"cannot publish {str(artifact.path)!r} to {self._where()}: "
                f"{type(exc).__name__}: {exc}. Nothing was submitted"
            )
            raise PublishError(msg) from exc
        except OSError as exc:  # last: some botocore errors are OSErrors too
            msg = (
                f"cannot read {str(artifact.path)!r} to upload it to {self._where()}: "
                f"{exc.strerror or exc}. Nothing was submitted"
            )
            raise PublishError(msg) from exc
        return Published(url=str(url), expires_at=now + self.expires_seconds)

    def _has(self, client: Any, key: str, artifact: FileArtifact) -> bool:
        """Whether the bucket already holds ``key`` with the file's size (HEAD request)."""
        try:
            head = client.head_object(Bucket=self.bucket, Key=key)
        except self._errors.ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ABSENT:
                return False
            if code == "403":
                # Without s3:ListBucket a missing object answers 403, not 404: try the PUT,
                # which reports a real permission problem itself.
                return False
            raise
        size = head.get("ContentLength")
        return not isinstance(size, int) or size == artifact.path.stat().st_size

    def _client_error(self, exc: Any, artifact: FileArtifact, key: str) -> PublishError:
        """A PublishError for a botocore ClientError, saying what to fix."""
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "")) or "unknown"
        detail = str(error.get("Message", "")).strip()
        what = f"cannot publish {str(artifact.path)!r} as {key!r} to {self._where()}"
        if code == "NoSuchBucket":
            fix = (
                f"the bucket {self.bucket!r} does not exist; create it, or fix publish.bucket "
                "(and publish.endpoint_url / publish.region)"
            )
        elif (
            found := credentials_fix(
                code,
                permissions=(
                    f"s3:PutObject and s3:GetObject on {self.bucket}/{self.prefix}* (and "
                    "s3:ListBucket to skip re-uploads)"
                ),
                region_fix="set publish.region to the bucket's region",
            )
        ) is not None:
            fix = found
        else:
            fix = "check the bucket's settings and the endpoint, then retry"
        reason = f"{code}: {detail}" if detail else code
        return PublishError(f"{what}: {reason}; {fix}. Nothing was submitted")
