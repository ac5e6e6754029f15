"""What the two S3 users (the ``s3`` publisher, the team's remote cache) share: making a
boto3 client for any S3-compatible endpoint, and saying what an S3 error code means to fix.

boto3 is an optional dependency (``pip install "motionflow[s3]"``), imported here on first use.
Credentials come from boto3's usual chain; nothing here reads, stores or prints them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["ABSENT", "credentials_fix", "make_client"]

ABSENT = frozenset({"404", "NoSuchKey", "NotFound"})
"""Codes of an object (or key) that is not there."""

_DENIED = frozenset({"403", "AccessDenied", "AllAccessDisabled", "AccountProblem"})
_BAD_KEYS = frozenset({"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken"})
_EXPIRED = frozenset({"ExpiredToken", "TokenRefreshRequired", "RequestExpired"})
_WRONG_REGION = frozenset(
    {"PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException"}
)


def credentials_fix(code: str, *, permissions: str, region_fix: str) -> str | None:
    """What to do about an S3 error code that is about access, keys or the region, or None.

    Args:
        code: the error code S3 answered.
        permissions: what the credentials need, e.g. ``s3:GetObject on bucket/prefix*``.
        region_fix: how to name the bucket's region in this setting.
    """
    if code in _DENIED:
        return f"access denied; the credentials need {permissions}"
    if code in _BAD_KEYS:
        return (
            "the credentials were rejected; check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY "
            "or the profile, and that they belong to this endpoint"
        )
    if code in _EXPIRED:
        return "the credentials have expired; refresh them (e.g. aws sso login) and retry"
    if code in _WRONG_REGION:
        return f"the bucket is in another region; {region_fix}"
    return None


def make_client(
    factory: Callable[..., Any] | None,
    *,
    endpoint_url: str | None,
    region: str | None,
    **config: Any,
) -> tuple[Any, Any]:
    """An S3 client (SigV4; path-style addressing with a custom endpoint, since MinIO and
    friends rarely resolve ``<bucket>.<host>``) and the ``botocore.exceptions`` module.

    Args:
        factory: builds the client from ``boto3.client``'s keyword arguments (tests pass
            one); default a private ``boto3.session.Session().client``.
        endpoint_url: an S3-compatible endpoint, or None for AWS.
        region: the bucket's region, or None for boto3's default.
        config: more ``botocore.config.Config`` options (timeouts, retries, pool size).

    Raises:
        ImportError: boto3 is not installed (the caller says how to install it).
        ValueError: botocore rejects the endpoint or the region.
    """
    import boto3.session
    import botocore.config
    import botocore.exceptions

    options: dict[str, Any] = {"signature_version": "s3v4", **config}
    if endpoint_url is not None:
        options["s3"] = {"addressing_style": "path"}
    make = factory or boto3.session.Session().client
    client = make(
        service_name="s3",
        endpoint_url=endpoint_url,
        region_name=region,
        config=botocore.config.Config(**options),
    )
    return client, botocore.exceptions
