"""Build the publisher a run uses from its ``publish:`` spec (recipe) or ``--publish`` (CLI).

Construction is data-driven: a spec is any object with a ``kind`` (``url``, ``static``, ``s3``,
``empiriolabs-upload``, ``loopback``) and that kind's fields, as ``recipe.schema`` validates
them, so this module needs neither the recipe's models nor the API client's class: the caller
(the engine, which owns both) hands over the spec and a way to get an :class:`Uploader`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from motionflow.errors import UsageError
from motionflow.publish.base import Publisher
from motionflow.publish.upload import Uploader, UploadPublisher

__all__ = ["KINDS", "PublishKind", "make_publisher", "publisher_spec"]

KINDS = ("url", "static", "s3", "empiriolabs-upload", "loopback")
"""Every publisher kind, as a recipe's ``publish.kind`` spells it."""

_DEFAULT_API = "https://api.empiriolabs.ai"  # uploads are remembered per API root


@dataclass(frozen=True)
class PublishKind:
    """A spec that is only a kind (``loopback``, the simulator's default)."""

    kind: str


def publisher_spec(provider: str, recipe_spec: Any, cli_spec: Any) -> Any:
    """The spec in force: the CLI's, else the recipe's, else ``loopback`` for ``simulate``.

    Raises:
        UsageError: ``empiriolabs`` with no publisher, or ``loopback`` with ``empiriolabs``.
    """
    spec = cli_spec or recipe_spec
    if spec is None and provider == "simulate":
        return PublishKind("loopback")
    if spec is None:
        msg = (
            "provider empiriolabs fetches the reference image and video from URLs, and this "
            "recipe says no way to publish local files: add publish: {kind: static, dir: ..., "
            "base_url: ...} (or s3, url, empiriolabs-upload) to the recipe, or pass --publish. "
            "Nothing was submitted"
        )
        raise UsageError(msg)
    if spec.kind == "loopback" and provider != "simulate":
        msg = (
            "publish: loopback serves files on 127.0.0.1, which EmpirioLabs cannot reach; use "
            "static, s3, url or empiriolabs-upload with provider empiriolabs"
        )
        raise UsageError(msg)
    return spec


def make_publisher(
    spec: Any,
    *,
    project_root: Path,
    allow_outside_project: bool,
    origin_of: Callable[[str], str | None],
    client: Callable[[], Awaitable[Uploader]],
    env: Mapping[str, str],
) -> Publisher:
    """A publisher for ``spec`` (any object with a ``kind`` and that kind's fields).

    Args:
        spec: the publisher's settings (``recipe.schema``'s models, or :class:`PublishKind`).
        project_root: the recipe's project folder (a static folder must be inside it).
        allow_outside_project: ``--allow-outside-project``.
        origin_of: the URL a digest was downloaded from (the ``url`` publisher).
        client: returns the run's API client, for ``empiriolabs-upload``.
        env: the environment (``EMPIRIOLABS_BASE_URL`` names the upload service).

    Raises:
        UsageError: the static folder is outside the project without
            ``--allow-outside-project``, boto3 is missing for ``s3``, or the kind is unknown.
    """
    from motionflow.publish.local import LoopbackPublisher, StaticPublisher, UrlPublisher

    kind = getattr(spec, "kind", None)
    if kind == "url":
        return UrlPublisher(origin_of)
    if kind == "static":
        folder = (project_root / spec.dir).resolve()
        if not folder.is_relative_to(project_root.resolve()) and not allow_outside_project:
            msg = (
                f"publish.dir {spec.dir!r} is outside the project {str(project_root)!r}; "
                "pass --allow-outside-project to let motionflow write there"
            )
            raise UsageError(msg)
        return StaticPublisher(folder, spec.base_url)
    if kind == "s3":
        from motionflow.publish.s3 import S3Publisher

        return S3Publisher(
            bucket=spec.bucket,
            prefix=spec.prefix,
            endpoint_url=spec.endpoint_url,
            region=spec.region,
            expires_hours=spec.expires_hours,
        )
    if kind == "empiriolabs-upload":
        base = env.get("EMPIRIOLABS_BASE_URL", "").strip() or _DEFAULT_API
        return UploadPublisher(client, base)
    if kind == "loopback":
        return LoopbackPublisher()
    msg = f"unknown publisher kind {kind!r}; use one of {', '.join(KINDS)} (docs/publishers.md)"
    raise UsageError(msg)
