"""Which remote cache a command uses (--remote, MOTIONFLOW_REMOTE, motionflow.toml), and the
mistakes in naming one: each is exit 2 with the place and the fix, before anything is contacted."""

from __future__ import annotations

from pathlib import Path

import pytest

from motionflow.cache.remote_config import read_project_config, remote_choice
from motionflow.errors import UsageError


def _toml(root: Path, text: str) -> Path:
    path = root / "motionflow.toml"
    path.write_text(text, "utf-8")
    return path


def test_no_remote_anywhere_is_none(tmp_path: Path) -> None:
    assert remote_choice(None, project_root=tmp_path, env={}) is None


def test_flag_beats_environment_beats_project_config(tmp_path: Path) -> None:
    _toml(tmp_path, '[cache]\nremote = "s3://from-toml/p"\nshare = "all"\n')
    env = {"MOTIONFLOW_REMOTE": "s3://from-env/q"}
    flag = remote_choice("s3://from-flag/r/", project_root=tmp_path, env=env)
    assert flag is not None
    assert (flag.spec.bucket, flag.spec.prefix, flag.origin) == ("from-flag", "r/", "--remote")
    assert flag.share == "all"  # the share setting comes from the project either way
    from_env = remote_choice(None, project_root=tmp_path, env=env)
    assert from_env is not None and from_env.spec.url == "s3://from-env/q/"
    from_toml = remote_choice(None, project_root=tmp_path, env={})
    assert from_toml is not None
    assert from_toml.spec.url == "s3://from-toml/p/"
    assert from_toml.origin.endswith("motionflow.toml")


def test_disabled_or_empty_means_no_remote(tmp_path: Path) -> None:
    _toml(tmp_path, '[cache]\nremote = "s3://team/p"\n')
    assert remote_choice(None, disabled=True, project_root=tmp_path, env={}) is None
    assert remote_choice(None, project_root=tmp_path, env={"MOTIONFLOW_REMOTE": ""}) is None


def test_endpoint_and_region_from_url_or_config(tmp_path: Path) -> None:
    _toml(tmp_path, '[cache]\nendpoint_url = "http://minio:9000"\nregion = "eu-west-1"\n')
    choice = remote_choice("s3://team/mf", project_root=tmp_path, env={})
    assert choice is not None
    assert (choice.spec.endpoint_url, choice.spec.region) == ("http://minio:9000", "eu-west-1")
    url = "s3://team/mf?endpoint=http://127.0.0.1:9000&region=auto"
    choice = remote_choice(url, project_root=tmp_path, env={})
    assert choice is not None
    assert (choice.spec.endpoint_url, choice.spec.region) == ("http://127.0.0.1:9000", "auto")


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("https://team/mf", "not an s3:// URL"),
        ("team/mf", "not an s3:// URL"),
        ("s3://", "not an s3:// URL"),
        ("s3://UPPER/mf", "which S3 does not allow"),
        ("s3://a/mf", "which S3 does not allow"),
        ("s3://team/../etc", "'..'"),
        ("s3://team/mf?endpoint=file:///etc/passwd", "not an http(s) URL"),
        ("s3://team/mf?token=abc", "only ?endpoint=URL and &region=NAME"),
    ],
)
def test_bad_urls_are_refused_with_the_fix(tmp_path: Path, url: str, says: str) -> None:
    with pytest.raises(UsageError, match="--remote") as caught:
        remote_choice(url, project_root=tmp_path, env={})
    assert says in str(caught.value)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[cache\nremote = 1\n", "not valid TOML"),
        ("cache = 3\n", ":1: 'cache' must be a table"),
        ('[cache]\n\nremtoe = "s3://team/p"\n', ":3: [cache] has no setting 'remtoe'"),
        ("[cache]\nremote = 5\n", ':2: [cache] remote must be text in quotes, e.g. remote = "..."'),
        ('[cache]\nshare = "everything"\nremote = "s3://team/p"\n', "share is 'everything'"),
    ],
)
def test_project_config_mistakes_name_the_file_and_line(
    tmp_path: Path, text: str, says: str
) -> None:
    path = _toml(tmp_path, text)
    with pytest.raises(UsageError) as caught:
        remote_choice(None, project_root=tmp_path, env={})
    assert str(path) in str(caught.value)
    assert says in str(caught.value)


def test_project_config_that_is_not_text_or_too_big(tmp_path: Path) -> None:
    (tmp_path / "motionflow.toml").write_bytes(b"\xff\xfe[cache]")
    with pytest.raises(UsageError, match="not UTF-8"):
        read_project_config(tmp_path)
    (tmp_path / "motionflow.toml").write_bytes(b"# x\n" * 300_000)
    with pytest.raises(UsageError, match="more than 1 MiB"):
        read_project_config(tmp_path)


def test_the_marker_file_init_writes_is_a_valid_empty_config(tmp_path: Path) -> None:
    _toml(tmp_path, "# Marks the motionflow project folder.\n")
    assert read_project_config(tmp_path) == {}
    assert remote_choice(None, project_root=tmp_path, env={}) is None


# The same mistakes through the CLI (exit 2, nothing run or written) are cases of the hostile
# corpus: tests/hostile/corpus.py (flag-remote-*, flag-executor-*, env-*, config-*).
