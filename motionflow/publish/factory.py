"""Build the publisher a run uses from ``publish:`` (recipe) or ``--publish`` (CLI)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter, ValidationError

from motionflow.errors import UsageError
from motionflow.publish.base import Publisher
from motionflow.recipe.schema import (
    LoopbackPublish,
    PublishSpec,
    S3Publish,
    StaticPublish,
    UploadPublish,
    UrlPublish,
)

if TYPE_CHECKING:
    from motionflow.providers.empiriolabs import EmpirioLabsClient

__all__ = ["make_publisher", "publish_from_cli", "publisher_spec"]

_ADAPTER: TypeAdapter[Any] = TypeAdapter(PublishSpec)


def publish_from_cli(kind: str | None, options: tuple[str, ...]) -> Any:
    """The ``--publish KIND --publish-option key=value ...`` spec, or None without ``kind``.

    Raises:
        UsageError: an option is not ``key=value`` or the spec is invalid for ``kind``.
    """
    if kind is None:
        if options:
            msg = "--publish-option needs --publish KIND (url, static, s3, empiriolabs-upload)"
            raise UsageError(msg)
        return None
    data: dict[str, Any] = {"kind": kind}
    for option in options:
        name, sep, value = option.partition("=")
        if not sep or not name.strip():
            msg = f"--publish-option {option!r} is not key=value, e.g. base_url=https://cdn/x"
            raise UsageError(msg)
        data[name.strip().replace("-", "_")] = value
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'kind'}: {e['msg']}" for e in exc.errors()
        )
        msg = f"--publish {kind}: {problems}. See docs/publishers.md"
        raise UsageError(msg) from exc


def publisher_spec(provider: str, recipe_spec: Any, cli_spec: Any) -> Any:
    """The spec in force: the CLI's, else the recipe's, else ``loopback`` for ``simulate``.

    Raises:
        UsageError: ``empiriolabs`` with no publisher, or ``loopback`` with ``empiriolabs``.
    """
    spec = cli_spec or recipe_spec
    if spec is None and provider == "simulate":
        return LoopbackPublish(kind="loopback")
    if spec is None:
        msg = (
            "provider empiriolabs fetches the reference image and video from URLs, and this "
            "recipe says no way to publish local files: add publish: {kind: static, dir: ..., "
            "base_url: ...} (or s3, url, empiriolabs-upload) to the recipe, or pass --publish. "
            "Nothing was submitted"
        )
        raise UsageError(msg)
    if isinstance(spec, LoopbackPublish) and provider != "simulate":
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
    client: Callable[[], Awaitable[EmpirioLabsClient]],
    env: Mapping[str, str],
) -> Publisher:
    """A publisher for ``spec``.

    Raises:
        UsageError: the static folder is outside the project without
            ``--allow-outside-project``, or boto3 is missing for ``s3``.
    """
    from motionflow.publish.local import LoopbackPublisher, StaticPublisher, UrlPublisher

    if isinstance(spec, UrlPublish):
        return UrlPublisher(origin_of)
    if isinstance(spec, StaticPublish):
        folder = (project_root / spec.dir).resolve()
        if not folder.is_relative_to(project_root.resolve()) and not allow_outside_project:
            msg = (
                f"publish.dir {spec.dir!r} is outside the project {str(project_root)!r}; "
                "pass --allow-outside-project to let motionflow write there"
            )
            raise UsageError(msg)
        return StaticPublisher(folder, spec.base_url)
    if isinstance(spec, S3Publish):
        from motionflow.publish.s3 import S3Publisher

        return S3Publisher(
            bucket=spec.bucket,
            prefix=spec.prefix,
            endpoint_url=spec.endpoint_url,
            region=spec.region,
            expires_hours=spec.expires_hours,
        )
    if isinstance(spec, UploadPublish):
        from motionflow.publish.upload import UploadPublisher

        base = env.get("EMPIRIOLABS_BASE_URL", "").strip() or "https://api.empiriolabs.ai"
        return UploadPublisher(client, base)
    assert isinstance(spec, LoopbackPublish)
    return LoopbackPublisher()
