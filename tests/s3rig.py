"""The S3 endpoint tests and benchmarks talk to: moto's server on 127.0.0.1, a fresh bucket per
test, and an environment with fake credentials and nothing of the user's own AWS setup.

Used by tests/test_publish_s3.py, test_remote_cache.py, test_team_flight.py, test_dask.py and
benchmarks/team.py.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

#: The fake secret key the tests use: it must never show in a message, a URL or a file.
SECRET = "s3cr3t-k3y-that-must-never-be-printed-0123456789"

#: The user's AWS and proxy settings, which must not reach a test (nor motionflow's own).
UNSET = (
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_CA_BUNDLE",
    "AWS_MAX_ATTEMPTS",
    "AWS_RETRY_MODE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "MOTIONFLOW_REMOTE",
    "MOTIONFLOW_REMOTE_SHARE",
    "MOTIONFLOW_LEASE_WAIT",
)


def fake_aws(nowhere: Path, secret: str = SECRET) -> dict[str, str]:
    """The settings that replace them: fake keys, no config files, no instance metadata."""
    return {
        "NO_PROXY": "127.0.0.1,localhost",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(nowhere / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(nowhere / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def use_fake_aws(env: Any, nowhere: Path, secret: str = SECRET) -> None:
    """Apply :func:`fake_aws` to ``env``: a ``pytest.MonkeyPatch`` or a mutable mapping."""
    if isinstance(env, MutableMapping):
        for name in UNSET:
            env.pop(name, None)
        env.update(fake_aws(nowhere, secret))
        return
    for name in UNSET:
        env.delenv(name, raising=False)
    for name, value in fake_aws(nowhere, secret).items():
        env.setenv(name, value)


@contextlib.contextmanager
def moto_endpoint() -> Iterator[str]:
    """moto's S3 server on a free loopback port, its conditional writes atomic as S3's are.

    moto checks ``If-None-Match``/``If-Match`` and then writes, without a lock: two requests
    at the same moment could both pass the check, which S3 never allows. The server runs in
    this process, so its ``put_object`` is serialised here (else a race test would measure
    moto's race, not ours).
    """
    from moto.s3.responses import S3Response
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    original = S3Response.put_object
    lock = threading.Lock()

    def atomic(response: Any) -> Any:
        with lock:
            return original(response)

    S3Response.put_object = atomic  # type: ignore[method-assign]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        S3Response.put_object = original  # type: ignore[method-assign]


def s3_client(endpoint: str) -> Any:
    """A boto3 client on the moto server (the keys it uses are the fake ones)."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key=SECRET,
    )


def new_bucket(endpoint: str) -> str:
    """A fresh, empty bucket on the moto server; its name."""
    name = f"mf-{uuid.uuid4().hex[:12]}"
    s3_client(endpoint).create_bucket(Bucket=name)
    return name
