"""Which shared remote cache a command uses: ``--remote``, ``MOTIONFLOW_REMOTE``, or the
project's ``motionflow.toml``, in that order; ``--no-remote`` (or an empty value) for none.

``motionflow.toml`` (at the project root, the folder that also marks where ``out/`` goes)::

    [cache]
    remote = "s3://team-bucket/motionflow"
    endpoint_url = "http://minio.internal:9000"   # optional: MinIO, R2, ...
    region = "us-east-1"                          # optional
    share = "default"                             # or "all" (docs/team.md)

The file is project configuration, so it is read as untrusted text: at most 1 MiB, TOML only,
only the keys above; a mistake is an error naming the file, the line and the fix.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from motionflow.cache.objects import RemoteSpec, parse_remote
from motionflow.errors import UsageError

__all__ = ["SHARES", "RemoteChoice", "read_project_config", "remote_choice"]

SHARES = ("default", "all")
"""``default``: paid results and prepared reference media; ``all``: every result."""

_MAX_BYTES = 1 << 20
_KEYS = {"remote", "endpoint_url", "region", "share"}


@dataclass(frozen=True)
class RemoteChoice:
    """The remote a command uses, where that choice came from, and what it shares."""

    spec: RemoteSpec
    origin: str
    share: str = "default"


def _line_of(text: str, needle: str) -> int:
    for number, line in enumerate(text.splitlines(), 1):
        if re.match(rf"\s*{re.escape(needle)}\s*=", line):
            return number
    return 1


def read_project_config(root: Path) -> dict[str, str]:
    """The ``[cache]`` table of ``<root>/motionflow.toml`` (empty when absent).

    Raises:
        UsageError: the file is too big, not TOML, or has unknown keys or non-text values.
    """
    path = root / "motionflow.toml"
    if not path.is_file():
        return {}
    try:
        data = path.read_bytes()[: _MAX_BYTES + 1]
    except OSError as exc:
        msg = f"{path}: cannot be read ({exc.strerror or exc}); fix its permissions"
        raise UsageError(msg) from exc
    if len(data) > _MAX_BYTES:
        msg = f"{path}: more than 1 MiB; a project config holds a few settings"
        raise UsageError(msg)
    try:
        text = data.decode("utf-8")
        parsed = tomllib.loads(text)
    except UnicodeDecodeError as exc:
        msg = f"{path}: not UTF-8 text ({exc.reason}); save it as UTF-8"
        raise UsageError(msg) from exc
    except tomllib.TOMLDecodeError as exc:
        msg = f"{path}: not valid TOML: {exc}; fix that line (https://toml.io)"
        raise UsageError(msg) from exc
    table = parsed.get("cache", {})
    if not isinstance(table, dict):
        msg = f"{path}:{_line_of(text, 'cache')}: 'cache' must be a table: [cache]"
        raise UsageError(msg)
    result: dict[str, str] = {}
    for name, value in table.items():
        line = _line_of(text, name)
        if name not in _KEYS:
            msg = (
                f"{path}:{line}: [cache] has no setting {name!r}; the settings are "
                f"{', '.join(sorted(_KEYS))} (docs/team.md)"
            )
            raise UsageError(msg)
        if not isinstance(value, str):
            msg = f'{path}:{line}: [cache] {name} must be text in quotes, e.g. {name} = "..."'
            raise UsageError(msg)
        result[name] = value
    return result


def _share(value: str, where: str) -> str:
    if value not in SHARES:
        msg = f"{where}: share is {value!r}; it is one of {', '.join(SHARES)} (docs/team.md)"
        raise UsageError(msg)
    return value


def remote_choice(
    flag: str | None,
    *,
    disabled: bool = False,
    project_root: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> RemoteChoice | None:
    """The remote cache to use, or None.

    Args:
        flag: ``--remote URL`` (an empty text means none).
        disabled: ``--no-remote``.
        project_root: where ``motionflow.toml`` may say ``[cache] remote``.
        env: the environment (default ``os.environ``): ``MOTIONFLOW_REMOTE``,
            ``MOTIONFLOW_REMOTE_SHARE``.

    Raises:
        UsageError: the URL, the share or the project config is wrong (nothing was contacted).
    """
    env = os.environ if env is None else env
    if disabled:
        return None
    config = read_project_config(project_root) if project_root is not None else {}
    toml = str(project_root / "motionflow.toml") if project_root is not None else ""
    share_env = env.get("MOTIONFLOW_REMOTE_SHARE", "").strip()
    share = (
        _share(share_env, "MOTIONFLOW_REMOTE_SHARE")
        if share_env
        else _share(config.get("share", "default"), toml)
    )
    if flag is not None:
        url, origin = flag, "--remote"
    elif "MOTIONFLOW_REMOTE" in env:
        url, origin = env["MOTIONFLOW_REMOTE"], "MOTIONFLOW_REMOTE"
    elif "remote" in config:
        url, origin = config["remote"], toml
    else:
        return None
    if not url.strip():
        return None
    try:
        spec = parse_remote(
            url, endpoint_url=config.get("endpoint_url"), region=config.get("region")
        )
    except UsageError as exc:
        raise UsageError(f"{origin}: {exc}") from None
    return RemoteChoice(spec, origin, share)
