"""The pydantic models of a recipe file (``version: 1``), exported by ``motionflow schema``."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

from motionflow.money import usd_problem

__all__ = [
    "IDENTIFIER",
    "MAX_NAME_BYTES",
    "MAX_PATH_CHARS",
    "Budget",
    "LocalPath",
    "LoopbackPublish",
    "PublishSpec",
    "RecipeModel",
    "RemoteInput",
    "S3Publish",
    "StageSpec",
    "StaticPublish",
    "UploadPublish",
    "UrlPublish",
    "path_problem",
]

#: Names that can appear inside ``${...}`` references and Jinja expressions.
IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*$"

Identifier = Annotated[str, StringConstraints(pattern=IDENTIFIER)]
Scalar = str | int | float | bool


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Budget(_Strict):
    """Spending limits; the run refuses to start (exit 3) when its plan costs more."""

    max_usd: float | None = Field(
        default=None,
        ge=0,
        allow_inf_nan=False,
        description="Most dollars this recipe may spend in one run (a finite number >= 0).",
    )

    @field_validator("max_usd", mode="before")
    @classmethod
    def _finite(cls, value: Any) -> Any:
        # .nan, .inf and -1 get the same message as --max-usd, before pydantic's own
        # "greater than or equal to 0 (got nan)"; text like "12" is left to pydantic.
        number = value
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                return value
        problem = None if value is None else usd_problem(number)
        if problem is not None:
            msg = (
                f"{problem}; an amount of dollars is a finite number >= 0. Write e.g. "
                "budget: {max_usd: 12.50}, or remove max_usd to set no limit"
            )
            raise ValueError(msg)
        return value


#: Longest path a recipe may name (Linux's PATH_MAX); one name in it: NAME_MAX bytes.
MAX_PATH_CHARS = 4096
MAX_NAME_BYTES = 255


def path_problem(path: str) -> str | None:
    """Why ``path`` cannot name a file on any system we run on, or None when it may."""
    if "\x00" in path:
        return "a path cannot contain a NUL character (\\0); remove it"
    if len(path) > MAX_PATH_CHARS:
        return (
            f"the path is {len(path):,} characters long, more than {MAX_PATH_CHARS:,}; "
            "use a shorter path (move the file nearer the recipe)"
        )
    for name in path.split("/"):
        if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
            return (
                f"the name {name[:40]!r}... is longer than {MAX_NAME_BYTES} bytes, which no "
                "file system allows; rename the file or folder"
            )
    return None


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def _checked_path(path: str) -> str:
    problem = path_problem(path)
    if problem is None and _SCHEME.match(path):
        scheme = path.split(":", 1)[0].lower()
        if scheme in ("http", "https"):
            problem = (
                "this looks like a URL, and a plain string is a local path; write a remote "
                f"input as a mapping: {{url: {path[:60]!r}}}"
            )
        else:
            problem = (
                f"only http(s) URLs are fetched, not {scheme}://; download the file and give "
                "its local path"
            )
    if problem is not None:
        raise ValueError(problem)
    return path


def _checked_url(url: str) -> str:
    """An http(s) URL with a host and no whitespace or control characters (a CR/LF in a URL
    would split the request's header lines)."""
    bad = next((c for c in url if ord(c) < 33 or ord(c) == 127), None)
    if bad is not None:
        msg = (
            f"the URL holds the control or space character {bad!r}; percent-encode it "
            "(a space is %20) or fix the URL"
        )
        raise ValueError(msg)
    try:
        parts = urlsplit(url)
        host = parts.hostname if parts.port is None or parts.port > 0 else None
    except ValueError:  # a bad port or IPv6 literal
        host = None
    if not host:
        msg = "the URL has no host (or a bad port); write it in full, e.g. https://example.com/dance.mp4"
        raise ValueError(msg)
    return url


LocalPath = Annotated[str, AfterValidator(_checked_path)]
"""A path as a recipe writes it, refused when no file system could hold it."""


class UrlPublish(_Strict):
    """Pass on the URLs remote inputs were fetched from (local files cannot be published)."""

    kind: Literal["url"]


class StaticPublish(_Strict):
    """Copy files into a folder that a web server publishes at ``base_url``."""

    kind: Literal["static"]
    dir: LocalPath = Field(description="The served folder (relative to the project, or absolute).")
    base_url: Annotated[str, StringConstraints(pattern=r"^https?://[^/\s]+")] = Field(
        description="The http(s) URL the folder is served at."
    )


class S3Publish(_Strict):
    """Upload to an S3-compatible bucket and hand out presigned GET URLs (``motionflow[s3]``)."""

    kind: Literal["s3"]
    bucket: str = Field(min_length=3, description="The bucket name.")
    prefix: str = Field(default="motionflow/", description="Key prefix inside the bucket.")
    endpoint_url: Annotated[str, StringConstraints(pattern=r"^https?://")] | None = Field(
        default=None, description="An S3-compatible endpoint (MinIO, R2, ...); AWS if omitted."
    )
    region: str | None = Field(default=None, description="The bucket's region.")
    expires_hours: float = Field(
        default=24, gt=0, le=168, description="How long presigned URLs stay valid (max 7 days)."
    )


class UploadPublish(_Strict):
    """Use the service's own upload endpoint (unconfirmed for this model: opt in)."""

    kind: Literal["empiriolabs-upload"]


class LoopbackPublish(_Strict):
    """Serve files from the motionflow process on 127.0.0.1 (only for a local fake server)."""

    kind: Literal["loopback"]


PublishSpec = Annotated[
    UrlPublish | StaticPublish | S3Publish | UploadPublish | LoopbackPublish,
    Field(discriminator="kind"),
]
"""How local media become URLs the service fetches; ``publish:`` in a recipe."""


class RemoteInput(_Strict):
    """An input fetched over http(s) once into the cache, optionally pinned by its sha256."""

    url: Annotated[str, StringConstraints(pattern=r"^https?://"), AfterValidator(_checked_url)] = (
        Field(description="An http:// or https:// URL; other schemes are refused.")
    )
    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F]{64}$")] | None = Field(
        default=None,
        description="Expected sha256 of the content. Pinned inputs are planned without network.",
    )
    max_mb: float = Field(
        default=200, gt=0, le=4096, description="Refuse downloads larger than this (MB)."
    )


class StageSpec(_Strict):
    """One named step of the pipeline."""

    uses: str = Field(description="The stage kind, e.g. prompt, python, kling.motion_control.")
    with_: dict[str, Any] = Field(
        default_factory=dict,
        alias="with",
        description="Parameters. Strings may hold ${...} references and {{ ... }} Jinja2.",
    )
    needs: list[Identifier] = Field(
        default_factory=list, description="Extra stages that must finish first."
    )
    takes: int = Field(
        default=1,
        ge=1,
        le=100,
        description="Independent samples of a generation, each cached on its own.",
    )
    over: Literal["variants"] | None = Field(
        default=None,
        description="variants: run once for the whole matrix; each ${stages.X.field} becomes"
        " the list of X's results over every variant (and take), in matrix order.",
    )


class RecipeModel(_Strict):
    """A motionflow recipe."""

    version: Literal[1] = Field(description="Recipe format version; always 1.")
    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")] | None = (
        Field(default=None, description="Output folder name under out/; defaults to the file stem.")
    )
    description: str | None = None
    provider: Literal["simulate", "empiriolabs"] = Field(
        default="simulate",
        description="simulate: offline and free; empiriolabs: the real, paid API.",
    )
    budget: Budget = Field(default_factory=Budget)
    publish: PublishSpec | None = Field(
        default=None,
        description="How local media become URLs the service can fetch: url, static, s3, "
        "empiriolabs-upload, loopback. simulate defaults to loopback; empiriolabs needs one.",
    )
    vars: dict[Identifier, Any] = Field(
        default_factory=dict, description="Values for {{ ... }} templates; --var k=v overrides."
    )
    matrix: dict[str, Any] = Field(
        default_factory=dict,
        description="Axes of lists, plus optional include/exclude lists of mappings.",
    )
    inputs: dict[Identifier, LocalPath | RemoteInput] = Field(
        default_factory=dict,
        description="Local paths (relative to the recipe) or {url, sha256} remote files.",
    )
    stages: dict[Identifier, StageSpec] = Field(min_length=1)
    outputs: list[Identifier] = Field(
        default_factory=list,
        description="Stages whose results are written to out/<recipe>/<variant>/.",
    )
