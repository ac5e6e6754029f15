"""The hostile-input corpus: every bad recipe, file, flag and environment we know of, as data.

Each :class:`Case` is a small project (files, some of them special: a FIFO, a sparse giant, a
folder where a file belongs), one ``motionflow`` command, an environment, and the words its
message must contain. Every case must end with exit code 2, no traceback, never the
last-resort "internal error" (exit 70), a message naming the item, and nothing written to the
cache or ``out/``. ``tests/test_hostile_corpus.py`` runs them all.

Big cases are generated, sparsely where the size is the point, so the corpus stays small on
disk. To write the corpus out for inspection or for another tool::

    python tests/hostile/corpus.py DEST      # one folder per case, with case.json

The archives of the import attacks are forged from a real export by
``tests/hostile/archives.py`` (they need a cache to start from).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ASSETS = HERE.parents[1] / "recipes" / "assets"

#: A file's content: text, or a maker called with the path (FIFOs, sparse files, folders).
Content = str | bytes | Callable[[Path], None]


def sparse(size: int) -> Callable[[Path], None]:
    """A file of ``size`` zero bytes that takes no disk space."""

    def make(path: Path) -> None:
        with path.open("wb") as handle:
            handle.truncate(size)

    return make


def fifo(path: Path) -> None:
    os.mkfifo(path)


def folder(path: Path) -> None:
    path.mkdir()


def copy_of(name: str) -> Callable[[Path], None]:
    """A copy of a file of this folder (the hand-written cases)."""

    def make(path: Path) -> None:
        path.write_bytes((HERE / name).read_bytes())

    return make


@dataclass(frozen=True)
class Case:
    """One hostile input: the project's files, the command, and what the message must say."""

    name: str
    args: tuple[str, ...]
    needles: tuple[str, ...]
    files: dict[str, Content] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    needs: str = ""
    """A platform feature the case needs (``"mkfifo"``); skipped where it is missing."""

    def build(self, root: Path) -> None:
        """Write the case's project into ``root`` (which holds the sample assets)."""
        for name, content in self.files.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, str):
                path.write_text(content, encoding="utf-8")
            elif isinstance(content, bytes):
                path.write_bytes(content)
            else:
                content(path)


SMALL = """\
version: 1
name: small
provider: simulate
matrix:
  outfit: [red jacket, white hoodie]
inputs:
  hero: assets/hero.png
  dance: assets/dance.mp4
stages:
  prompt:
    uses: prompt
    with: {template: "A dancer in a {{ outfit }} on a rooftop."}
  take:
    uses: kling.motion_control
    with:
      image: ${inputs.hero}
      video: ${inputs.dance}
      prompt: ${stages.prompt.text}
      character_orientation: video
      duration: 3
outputs: [take]
"""

#: No inputs: with inputs, `validate` digests them before it finds the problem.
MATRIX_2X2 = """\
version: 1
matrix:
  outfit: [red jacket, white hoodie]
  light: [dusk, noon]
stages:
  prompt:
    uses: prompt
    with: {template: "A dancer in a {{ outfit }} at {{ light }}."}
"""

TEMPLATE_RECIPE = """\
version: 1
name: hostile
provider: simulate
vars:
  outfits: [red jacket, white hoodie]
stages:
  prompt:
    uses: prompt
    with:
      template: "{template}"
outputs: [prompt]
"""

#: Templates built to hang or exhaust the renderer, and the limit each message names.
TEMPLATES = {
    "nested_ranges": (
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "range() of more than 10,000",
    ),
    "nested_loops": (
        "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}",
        "loops ran more than",
    ),
    "lipsum": ("{{ lipsum(n=10**8) }}", "lipsum"),
    "power": ("{{ 9**(9**9) }}", "bits"),
    "repeat": ("{{ 'a' * 10**10 }}", "10,000,000,000"),
    "doubling": ("{% set s = 'a' * 1000000 %}{{ s ~ s }}", "limit: 1,000,000"),
    "padding": ("{{ 'a'.ljust(10**9) }}", "str.ljust"),
    "center_filter": ("{{ 'a' | center(10000000000) }}", "width"),
    "format_width": ("{{ '%0999999999d' % 1 }}", "format width"),
    "replace": ("{{ ('a' * 100000).replace('', 'bbbbbbbbbbbbbbbbbbbb') }}", "replaced text"),
    "shared_lists": (
        "{% set l = range(1000) | list %}{% set m = [l] * 1000 %}{{ [m] * 1000 }}",
        "limit: 1,000,000",
    ),
    "output_flood": (
        "{% for i in range(10000) %}{{ 'a' * 1000 }}{% endfor %}",
        "writes more than",
    ),
    "set_block_flood": (
        "{% set x %}{% for i in range(10000) %}{{ 'a' * 200 }}{% endfor %}{% endset %}ok",
        "writes more than",
    ),
    "recursive_macro": (
        "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
        "recursion too deep",
    ),
    "recursive_loop": (
        "{% for x in [1] recursive %}{{ loop([1]) }}{% endfor %}",
        "recursion too deep",
    ),
    "exponential_macro": (
        "{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}"
        "{{ f(60) }}",
        "longer than",
    ),
}


def _recipe_cases() -> list[Case]:
    cases = []
    files = {
        "alias_bomb.yaml": ("alias_bomb.yaml:9:", "more than 100,000 values", "aliases"),
        "merge_bomb.yaml": ("merge_bomb.yaml:", "more than 100,000 values", "merges (<<)"),
        "matrix_10_axes.yaml": (
            "matrix_10_axes.yaml:3:1",
            "would make 10,000,000,000 variants",
            "MOTIONFLOW_MAX_VARIANTS",
        ),
    }
    for name, needles in files.items():
        for command in ("validate", "plan", "run"):
            cases.append(
                Case(
                    f"recipe-{name[:-5]}-{command}", (command, name), needles, {name: copy_of(name)}
                )
            )
    depth = 500_000  # under the 1 MiB cap; the C parser would crash the process
    cases += [
        Case(
            "recipe-huge",
            ("validate", "huge.yaml"),
            ("huge.yaml", "larger than 1 MiB (1,048,576 bytes)"),
            {"huge.yaml": sparse(2 << 20)},
        ),
        Case(
            "recipe-nested-500000",
            ("validate", "deep.yaml"),
            ("deep.yaml:1:", "nest more than 200 deep"),
            {"deep.yaml": "[" * depth + "]" * depth},
        ),
        Case(
            "recipe-folder",
            ("validate", "folder.yaml"),
            ("folder.yaml", "is a directory"),
            {"folder.yaml": folder},
        ),
        Case(
            "variants-over-the-cap",
            ("validate", "m.yaml"),
            ("m.yaml:", "would make 4 variants", "limit of 3"),
            {"m.yaml": MATRIX_2X2},
            env={"MOTIONFLOW_MAX_VARIANTS": "3"},
        ),
    ]
    for command in ("validate", "plan", "run"):
        cases.append(
            Case(
                f"recipe-dev-zero-{command}",
                (command, "/dev/zero"),
                ("/dev/zero", "not a regular file"),
            )
        )
    for command in ("validate", "run"):
        cases.append(
            Case(
                f"recipe-fifo-{command}",
                (command, "pipe.yaml"),
                ("pipe.yaml", "not a regular file"),
                {"pipe.yaml": fifo},
                needs="mkfifo",
            )
        )
    for name, (template, needle) in sorted(TEMPLATES.items()):
        text = TEMPLATE_RECIPE.format(template=template)
        cases.append(
            Case(
                f"template-{name}",
                ("validate", "hostile.yaml"),
                ("hostile.yaml:10:", needle, "nothing was run or spent"),
                {"hostile.yaml": text},
            )
        )
    return cases


def _plan_file_cases() -> list[Case]:
    depth = 200_000
    plans: dict[str, tuple[Content | None, str]] = {
        "dev-zero": (None, "not a regular file"),
        "fifo": (fifo, "not a regular file"),
        "huge": (sparse((64 << 20) + 1), "larger than 64 MiB"),
        "deep": ("[" * depth + "]" * depth, "nests too deep"),
        "missing": (None, "does not exist"),
        "not-json": ("{not json", "is not JSON"),
        "not-a-plan": ("[]", "not a motionflow plan"),
    }
    cases = []
    for kind, (content, needle) in plans.items():
        name = "/dev/zero" if kind == "dev-zero" else f"plan-{kind}.json"
        files: dict[str, Content] = {"small.yaml": SMALL}
        if content is not None:
            files[name] = content
        cases.append(
            Case(
                f"plan-file-{kind}",
                ("run", "small.yaml", "--plan", name),
                (f"the plan file {name!r}", needle, "Nothing was run"),
                files,
                needs="mkfifo" if content is fifo else "",
            )
        )
    return cases


def _flag_cases() -> list[Case]:
    small = {"small.yaml": SMALL}
    flags = {
        "max-usd-nan": (("--max-usd", "nan"), ("--max-usd", "NaN is not a number of dollars")),
        "max-usd-inf": (("--max-usd", "inf"), ("--max-usd", "not a finite number")),
        "max-usd-huge": (("--max-usd", "1e400"), ("--max-usd", "not a finite number")),
        "max-usd-negative": (("--max-usd", "-1"), ("--max-usd", "is negative")),
        "var-no-name": (("--var", "=x"), ("--var '=x' is not NAME=VALUE",)),
        "var-unknown": (("--var", "nope=1"), ("--var nope", "has no var 'nope'")),
        "jobs-zero": (("--jobs", "0"), ("--jobs", "0")),
        "publish-option-alone": (("--publish-option", "k=v"), ("--publish-option needs",)),
        "publish-unknown-option": (
            ("--publish", "url", "--publish-option", "color=red"),
            ("--publish url", "color"),
        ),
        "remote-not-s3": (("--remote", "ftp://team/mf"), ("--remote", "not an s3:// URL")),
        "remote-bad-bucket": (("--remote", "s3://A_B/mf"), ("--remote", "'A_B'")),
        "remote-dotdot": (("--remote", "s3://team/../x"), ("--remote", "'..'")),
        "remote-file-endpoint": (
            ("--remote", "s3://team/mf?endpoint=file:///etc/passwd"),
            ("endpoint", "not an http(s) URL"),
        ),
        "remote-unknown-option": (("--remote", "s3://team/mf?acl=public"), ("acl",)),
        "executor-unknown": (("--executor", "spark"), ("--executor", "'spark'")),
        "executor-empty-address": (("--executor", "dask://"), ("'dask://'",)),
    }
    return [
        Case(f"flag-{name}", ("run", "small.yaml", *args), needles, small)
        for name, (args, needles) in flags.items()
    ]


def _config_cases() -> list[Case]:
    """A broken ``motionflow.toml`` (the project's config): located, refused, nothing run."""
    configs = {
        "not-toml": ("[cache\nremote = 1\n", ("motionflow.toml", "not valid TOML")),
        "cache-not-table": ("cache = 3\n", ("motionflow.toml:1", "must be a table")),
        "unknown-setting": (
            '[cache]\nremtoe = "s3://team/mf"\n',
            ("motionflow.toml:2", "no setting 'remtoe'"),
        ),
        "remote-number": ("[cache]\nremote = 5\n", ("motionflow.toml:2", "text in quotes")),
        "share-unknown": (
            '[cache]\nremote = "s3://team/mf"\nshare = "most"\n',
            ("share is 'most'",),
        ),
        "remote-not-s3": ('[cache]\nremote = "http://x/y"\n', ("not an s3:// URL",)),
        "binary": (b"\xff\xfe\x00[cache]", ("motionflow.toml", "not UTF-8")),
    }
    return [
        Case(
            f"config-{name}",
            ("run", "small.yaml"),
            needles,
            {"small.yaml": SMALL, "motionflow.toml": content},
        )
        for name, (content, needles) in configs.items()
    ]


def _environment_cases() -> list[Case]:
    small = {"small.yaml": SMALL}
    deep = "[" * 100_000 + "]" * 100_000
    settings: dict[str, tuple[dict[str, str], tuple[str, ...], dict[str, Content]]] = {
        "remote-env-not-s3": (
            {"MOTIONFLOW_REMOTE": "gs://team/mf"},
            ("MOTIONFLOW_REMOTE", "not an s3:// URL"),
            {},
        ),
        "remote-share-unknown": (
            {"MOTIONFLOW_REMOTE": "s3://team/mf", "MOTIONFLOW_REMOTE_SHARE": "most"},
            ("MOTIONFLOW_REMOTE_SHARE", "'most'"),
            {},
        ),
        "executor-env-unknown": ({"MOTIONFLOW_EXECUTOR": "ray"}, ("'ray'",), {}),
        "ffmpeg-missing": (
            {"MOTIONFLOW_FFMPEG": "/nonexistent/ffmpeg"},
            ("MOTIONFLOW_FFMPEG='/nonexistent/ffmpeg'", "does not exist"),
            {},
        ),
        "ffmpeg-not-executable": (
            {"MOTIONFLOW_FFMPEG": "notes.txt"},
            ("MOTIONFLOW_FFMPEG='notes.txt'", "not executable"),
            {"notes.txt": "not a program"},
        ),
        "font-dev-zero": (
            {"MOTIONFLOW_FONT": "/dev/zero"},
            ("MOTIONFLOW_FONT='/dev/zero'", "not a .ttf"),
            {},
        ),
        "prices-dev-zero": (
            {"MOTIONFLOW_PRICES": "/dev/zero"},
            ("price table '/dev/zero'", "not a regular file"),
            {},
        ),
        "prices-missing": (
            {"MOTIONFLOW_PRICES": "nope.json"},
            ("price table 'nope.json'", "does not exist"),
            {},
        ),
        "prices-deep": (
            {"MOTIONFLOW_PRICES": "deep.json"},
            ("price table 'deep.json'", "larger than"),
            {"deep.json": deep},
        ),
        "prices-nested": (
            {"MOTIONFLOW_PRICES": "nested.json"},
            ("price table 'nested.json'",),
            {"nested.json": "[" * 30_000 + "]" * 30_000},
        ),
        "prices-nan": (
            {"MOTIONFLOW_PRICES": "nan.json"},
            ("per_second['std']",),
            {
                "nan.json": json.dumps(
                    {"model": "m", "as_of": "2026-01-01", "per_second": {"std": "NaN", "pro": 1}}
                )
            },
        ),
        "variants-cap-word": (
            {"MOTIONFLOW_MAX_VARIANTS": "lots"},
            ("MOTIONFLOW_MAX_VARIANTS='lots'", "whole number"),
            {},
        ),
        "variants-cap-negative": (
            {"MOTIONFLOW_MAX_VARIANTS": "-1"},
            ("MOTIONFLOW_MAX_VARIANTS='-1'",),
            {},
        ),
        "job-timeout-word": (
            {"EMPIRIOLABS_JOB_TIMEOUT": "abc"},
            ("EMPIRIOLABS_JOB_TIMEOUT='abc'", "not a number"),
            {},
        ),
        "job-timeout-nan": (
            {"EMPIRIOLABS_JOB_TIMEOUT": "nan"},
            ("EMPIRIOLABS_JOB_TIMEOUT='nan'",),
            {},
        ),
        "max-jobs-negative": ({"EMPIRIOLABS_MAX_JOBS": "-3"}, ("EMPIRIOLABS_MAX_JOBS='-3'",), {}),
        "poll-infinite": (
            {"EMPIRIOLABS_POLL_SECONDS": "inf"},
            ("EMPIRIOLABS_POLL_SECONDS='inf'",),
            {},
        ),
        "rate-limit-word": ({"EMPIRIOLABS_RATE_LIMIT": "x"}, ("EMPIRIOLABS_RATE_LIMIT='x'",), {}),
        "patience-word": (
            {"EMPIRIOLABS_NOT_FOUND_PATIENCE": "zz"},
            ("EMPIRIOLABS_NOT_FOUND_PATIENCE='zz'",),
            {},
        ),
        "retention-negative": (
            {"EMPIRIOLABS_RETENTION_SECONDS": "-1"},
            ("EMPIRIOLABS_RETENTION_SECONDS='-1'",),
            {},
        ),
        "cache-under-a-file": (
            {"MOTIONFLOW_CACHE": "notes.txt/cache"},
            ("notes.txt/cache", "MOTIONFLOW_CACHE"),
            {"notes.txt": "a file, not a folder"},
        ),
    }
    return [
        Case(f"env-{name}", ("run", "small.yaml", "-y"), needles, {**small, **files}, env)
        for name, (env, needles, files) in settings.items()
    ]


INPUT_RECIPE = """\
version: 1
name: inputs
inputs:
  hero: {path}
stages:
  still: {{uses: image.prepare, with: {{src: "${{inputs.hero}}"}}}}
outputs: [still]
"""


def symlink_to(target: str) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        path.symlink_to(target)

    return make


def _input_cases() -> list[Case]:
    """Recipe inputs that are not the files they claim to be, or not files at all."""
    svg = '<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><rect/></svg>'
    inputs: dict[str, tuple[str, dict[str, Content], tuple[str, ...], str]] = {
        "missing": ("assets/nope.png", {}, ("'hero'", "assets/nope.png"), ""),
        "device": (
            "assets/zero.png",
            {"assets/zero.png": symlink_to("/dev/zero")},
            ("hero", "outside the project"),
            "",
        ),
        "device-allowed-outside": (
            "/dev/zero",
            {},
            ("hero", "not a regular file"),
            "",
        ),
        "fifo": (
            "assets/pipe.png",
            {"assets/pipe.png": fifo},
            ("hero", "not a regular file"),
            "mkfifo",
        ),
        "folder": ("assets/dir.png", {"assets/dir.png": folder}, ("hero", "dir.png"), ""),
        "svg": ("assets/drawing.png", {"assets/drawing.png": svg}, ("hero", "SVG"), ""),
        "text-as-png": (
            "assets/notes.png",
            {"assets/notes.png": "just some words\n"},
            ("hero", "notes.png"),
            "",
        ),
        "outside-project": ("../elsewhere.png", {}, ("hero", "outside the project"), ""),
        "symlink-loop": (
            "assets/loop.png",
            {"assets/loop.png": symlink_to("loop.png")},
            ("hero", "loop.png"),
            "",
        ),
        "long-path": ("assets/" + "x" * 5000 + ".png", {}, ("hero",), ""),
        "nul-in-path": ('"assets/a\\0b.png"', {}, ("hero",), ""),
        "crlf-url": (
            '{url: "https://example.com/a\\r\\nX-Evil: 1.png"}',
            {},
            ("hero", "control or space character"),
            "",
        ),
        "url-without-host": ("{url: 'https:///a.png'}", {}, ("hero", "no host"), ""),
        "url-bad-port": ("{url: 'https://example.com:99999/a.png'}", {}, ("hero", "port"), ""),
        "url-as-a-path": ("https://example.com/a.png", {}, ("hero", "looks like a URL"), ""),
        "ftp-path": ("ftp://example.com/a.png", {}, ("hero", "only http(s)"), ""),
        "ftp-url": ("{url: 'ftp://example.com/a.png'}", {}, ("hero", "url"), ""),
    }
    cases = []
    for name, (path, files, needles, needs) in inputs.items():
        recipe = INPUT_RECIPE.format(path=path)
        outside = ("--allow-outside-project",) if name.endswith("allowed-outside") else ()
        for command in ("validate", "run"):
            cases.append(
                Case(
                    f"input-{name}-{command}",
                    (command, "inputs.yaml", *outside),
                    needles,
                    {"inputs.yaml": recipe, **files},
                    needs=needs,
                )
            )
    return cases


def _command_cases() -> list[Case]:
    """Other commands given a bad file, key, option or folder."""
    small = {"small.yaml": SMALL}
    commands: dict[str, tuple[tuple[str, ...], tuple[str, ...], dict[str, Content]]] = {
        "import-dev-zero": (("cache", "import", "/dev/zero"), ("'/dev/zero'", "not a regular"), {}),
        "import-folder": (("cache", "import", "dir"), ("'dir'",), {"dir": folder}),
        "import-fifo": (
            ("cache", "import", "pipe.tar.gz"),
            ("pipe.tar.gz",),
            {"pipe.tar.gz": fifo},
        ),
        "import-not-gzip": (
            ("cache", "import", "team.tar.gz"),
            ("team.tar.gz", "not a gzip"),
            {"team.tar.gz": "hello"},
        ),
        "import-missing": (("cache", "import", "gone.tar.gz"), ("no export at 'gone.tar.gz'",), {}),
        "forget-short-key": (("cache", "forget", "ab"), ("'ab'", "shorter than 8"), {}),
        "gc-negative-days": (("cache", "gc", "--keep-days", "-1"), ("--keep-days",), {}),
        "jobs-bad-state": (("jobs", "--state", "bogus"), ("--state", "bogus"), {}),
        "dag-bad-format": (("dag", "small.yaml", "--format", "nope"), ("--format",), small),
        "init-on-a-file": (
            ("init", "notes.txt"),
            ("'notes.txt' is a file",),
            {"notes.txt": "mine"},
        ),
        "schema-to-a-folder": (("schema", "-o", "dir"), ("dir",), {"dir": folder}),
        "plan-to-a-folder": (
            ("plan", "small.yaml", "-o", "dir"),
            ("dir",),
            {**small, "dir": folder},
        ),
        "why-unknown-var": (("why", "small.yaml", "--var", "nope=1"), ("--var nope",), small),
        "impact-unknown-var": (("impact", "small.yaml", "--var", "nope=1"), ("--var nope",), small),
        "report-unknown-var": (("report", "small.yaml", "--var", "nope=1"), ("--var nope",), small),
    }
    return [
        Case(
            f"command-{name}",
            args,
            needles,
            files,
            needs="mkfifo" if fifo in files.values() else "",
        )
        for name, (args, needles, files) in commands.items()
    ]


PAID = SMALL.replace("provider: simulate", "provider: empiriolabs")

#: Loopback port 9 (discard): nothing listens, so no case can ever reach a real service.
NOWHERE = "http://127.0.0.1:9"


def _account_cases() -> list[Case]:
    """Settings of the paid account that are refused before any request is made."""
    accounts: dict[str, tuple[dict[str, str], tuple[str, ...]]] = {
        "base-url-ftp": (
            {
                "EMPIRIOLABS_BASE_URL": "ftp://api.example.com",
                "EMPIRIOLABS_API_KEY": "sk-0123456789",
            },
            ("EMPIRIOLABS_BASE_URL",),
        ),
        "base-url-no-host": (
            {"EMPIRIOLABS_BASE_URL": "https://", "EMPIRIOLABS_API_KEY": "sk-0123456789"},
            ("EMPIRIOLABS_BASE_URL",),
        ),
        "key-not-ascii": (
            {"EMPIRIOLABS_BASE_URL": NOWHERE, "EMPIRIOLABS_API_KEY": "sk-clé"},
            ("EMPIRIOLABS_API_KEY",),
        ),
        "key-with-newline": (
            {"EMPIRIOLABS_BASE_URL": NOWHERE, "EMPIRIOLABS_API_KEY": "sk-a\nX-Evil: 1"},
            ("EMPIRIOLABS_API_KEY",),
        ),
    }
    return [
        Case(
            f"account-{name}",
            ("run", "paid.yaml", "-y", "--publish", "empiriolabs-upload"),
            needles,
            {"paid.yaml": PAID},
            env,
        )
        for name, (env, needles) in accounts.items()
    ]


def all_cases() -> list[Case]:
    """Every case of the corpus, in a stable order, with unique names."""
    cases = _recipe_cases() + _plan_file_cases() + _flag_cases() + _environment_cases()
    cases += _config_cases()
    cases += _input_cases() + _account_cases() + _command_cases()
    names = [case.name for case in cases]
    assert len(names) == len(set(names)), "duplicate case names"
    return cases


def main(argv: list[str]) -> int:
    """Write every case to ``DEST/<name>/`` with a ``case.json`` saying how to run it."""
    if len(argv) != 1:
        print("usage: python tests/hostile/corpus.py DEST", file=sys.stderr)
        return 2
    dest = Path(argv[0])
    for case in all_cases():
        root = dest / case.name
        (root / "assets").mkdir(parents=True, exist_ok=True)
        for asset in ("hero.png", "dance.mp4"):
            (root / "assets" / asset).write_bytes((ASSETS / asset).read_bytes())
        (root / "motionflow.toml").touch()
        if case.needs and not hasattr(os, case.needs):
            continue
        case.build(root)
        spec = {"args": case.args, "env": case.env, "needles": case.needles, "exit": 2}
        (root / "case.json").write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {len(all_cases())} cases under {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
