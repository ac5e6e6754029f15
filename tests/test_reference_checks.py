"""A paid job's references are checked before it is submitted: the URL still serves the file,
and the file decodes whole. Either failing is refused at $0, with a message that says why.
"""

from __future__ import annotations

import asyncio
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from service import Service, make_service, new_project

from motionflow.cache.store import Cache
from motionflow.errors import PublishError
from motionflow.fakeapi.faults import UPLOAD_PATH, Faults
from motionflow.keys import digest_file
from motionflow.media.integrity import DecodeCheck, decode_report, memo_name
from motionflow.media.rules import check_image, check_video
from motionflow.publish.base import Published, PublishedUrls
from motionflow.publish.local import published_name
from motionflow.publish.verify import url_problem
from motionflow.stages.base import FileArtifact

# -- corrupt media, made from the sample clip and image ------------------------------------------


def _boxes(data: bytes) -> dict[str, tuple[int, int]]:
    """Top-level ISO-BMFF boxes: name -> (payload start, end)."""
    found, i = {}, 0
    while i + 8 <= len(data):
        size, name = struct.unpack(">I4s", data[i : i + 8])
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", data[i + 8 : i + 16])[0], 16
        size = size or len(data) - i
        found[name.decode("latin-1")] = (i + header, i + size)
        i += size
    return found


def truncate(path: Path) -> None:
    """Cut ``path`` in half, as an interrupted copy does (the header, at the front, survives)."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def flip_mdat(path: Path) -> None:
    """Invert 64 bytes in the middle of the video keyframe nearest the middle of the mdat.

    A keyframe, because the frames after it (up to the next one) are predicted from it: a damaged
    one is a decode error and a run of frames that cannot be decoded, not a one-pixel glitch.
    """
    import av

    data = bytearray(path.read_bytes())
    start, end = _boxes(bytes(data))["mdat"]
    middle = (start + end) // 2
    with av.open(str(path)) as container:
        keys = [
            (p.pos, p.size)
            for p in container.demux(video=0)
            if p.size and p.is_keyframe and p.pos is not None
        ]
    pos, size = min(keys, key=lambda k: abs(k[0] - middle))
    at = pos + size // 2 - 32
    data[at : at + 64] = bytes(b ^ 0xFF for b in data[at : at + 64])
    path.write_bytes(bytes(data))


def flip_png(path: Path) -> None:
    """Flip one bit near the end of a PNG's image data: it still decodes (so probe() and the
    header checks pass it), but its chunk CRC no longer matches: the bytes are not the image."""
    data = bytearray(path.read_bytes())
    at = data.index(b"IDAT")
    length = int.from_bytes(data[at - 4 : at], "big")
    data[at + 4 + length - 6] ^= 0x01
    path.write_bytes(bytes(data))


def test_the_header_checks_alone_pass_both_broken_clips(tmp_path: Path) -> None:
    """The defect: probe() reads the header and one frame, so these used to be paid for."""
    from conftest import ASSETS

    cut, flipped = tmp_path / "cut.mp4", tmp_path / "flipped.mp4"
    for dest in (cut, flipped):
        shutil.copy(ASSETS / "dance.mp4", dest)
    truncate(cut)
    flip_mdat(flipped)
    assert check_video(cut, orientation="video") == []
    assert check_video(flipped, orientation="video") == []
    image = tmp_path / "hero.png"
    shutil.copy(ASSETS / "hero.png", image)
    flip_png(image)
    assert check_image(image) == []
    assert decode_report(image).problem == "its picture does not decode"
    assert decode_report(ASSETS / "dance.mp4").problem is None
    cut_report = decode_report(cut)
    assert cut_report.problem is not None
    video = next(s for s in cut_report.streams if s.kind == "video")
    assert video.frames < video.declared_frames * 0.6  # half the file: half the frames
    flipped_report = decode_report(flipped)
    assert flipped_report.problem is not None
    video = next(s for s in flipped_report.streams if s.kind == "video")
    assert video.errors > 0 and video.frames < video.declared_frames


def _refused(svc: Service, result: dict[str, object], *, subject: str, fix: str) -> str:
    err = str(result["_stderr"])
    assert result["_exit"] == 2, err  # a bad input, found while planning: nothing ran
    assert subject in err and "truncated or corrupt" in err, err
    assert "nothing was run or spent" in err
    assert fix in err and "Traceback" not in err
    assert svc.fake.submissions == []
    assert not (svc.root / "published").exists()  # not even published
    return err


def test_truncated_reference_clip_is_refused_at_zero_cost(service: Service) -> None:
    truncate(service.root / "assets" / "dance.mp4")
    service.recipe(["red jacket", "blue coat"])
    err = _refused(service, service.run_json(), subject="dance.mp4", fix="video.prepare")
    assert "paid.yaml:" in err  # located: the recipe line that uses the clip
    assert "of the 100 video frames it declares decode" in err


def test_bit_flipped_reference_clip_is_refused_at_zero_cost(service: Service) -> None:
    flip_mdat(service.root / "assets" / "dance.mp4")
    service.recipe(["red jacket"])
    err = _refused(service, service.run_json(), subject="dance.mp4", fix="video.prepare")
    assert "video packet" in err and "fail" in err


def test_corrupt_reference_image_is_refused_at_zero_cost(service: Service) -> None:
    flip_png(service.root / "assets" / "hero.png")
    service.recipe(["red jacket"])
    err = _refused(service, service.run_json(), subject="hero.png", fix="image.prepare")
    assert "picture does not decode" in err


def test_a_good_verdict_is_remembered_in_the_cache_and_a_bad_one_is_not(tmp_path: Path) -> None:
    from conftest import ASSETS

    cache = Cache(tmp_path / "cache")
    good = ASSETS / "dance.mp4"
    bad = tmp_path / "cut.mp4"
    shutil.copy(good, bad)
    truncate(bad)
    good_digest, bad_digest = digest_file(good), digest_file(bad)
    first = DecodeCheck()
    assert first.problem(good, good_digest, kind="video", memo=cache) is None
    assert first.problem(good, good_digest, kind="video", memo=cache) is None
    assert first.decoded == 1  # in process: once per digest
    assert cache.get(memo_name(good_digest))["ok"] is True
    message = first.problem(bad, bad_digest, kind="video", memo=cache)
    assert message is not None and str(bad) in message
    assert cache.get(memo_name(bad_digest)) is None
    later = DecodeCheck()  # the next run: a new process, the same cache
    assert later.problem(good, good_digest, kind="video", memo=cache) is None
    assert later.decoded == 0
    assert later.problem(bad, bad_digest, kind="video", memo=cache) is not None
    assert later.decoded == 1


def test_preflight_remembers_verdicts_in_the_memo_it_is_given(tmp_path: Path) -> None:
    from conftest import ASSETS

    from motionflow.stages.kling import MotionControlParams, MotionControlStage

    cache = Cache(tmp_path / "cache")
    image, video = ASSETS / "hero.png", ASSETS / "dance.mp4"
    params = MotionControlParams(
        image=FileArtifact(digest_file(image), image, ".png"),
        video=FileArtifact(digest_file(video), video, ".mp4"),
        prompt="A dancer.",
        character_orientation="video",
        duration=3,
    )
    assert MotionControlStage().preflight(params, memo=cache) == []
    assert cache.get(memo_name(digest_file(video)))["ok"] is True
    assert cache.get(memo_name(digest_file(image)))["ok"] is True


# -- remembered URLs that stopped serving ----------------------------------------------------------


def _publish_line(svc: Service, line: str) -> None:
    path = svc.root / "paid.yaml"
    lines = path.read_text(encoding="utf-8").splitlines()
    text = "\n".join(line if x.startswith("publish:") else x for x in lines) + "\n"
    path.write_text(text, encoding="utf-8")


@pytest.mark.slow
def test_a_deleted_published_copy_is_published_again(service: Service) -> None:
    service.recipe(["red jacket"])
    assert service.run_json()["_exit"] == 0
    published = service.root / "published"
    names = sorted(p.name for p in published.iterdir())
    for path in published.iterdir():
        path.unlink()
    service.recipe(["red jacket", "blue coat"])
    result = service.run_json()
    # Before: the remembered URL was reused, the service fetched a 404 and charged anyway.
    assert result["_exit"] == 0, result["_stderr"]
    assert result["jobs_submitted"] == 1
    assert sorted(p.name for p in published.iterdir()) == names
    assert all(digest_file(p) == "blake3:" + p.stem for p in published.iterdir())


@pytest.mark.slow
def test_a_url_the_web_server_no_longer_serves_is_refused_at_zero_cost(service: Service) -> None:
    service.recipe(["red jacket"])
    assert service.run_json()["_exit"] == 0
    assert len(service.fake.submissions) == 1
    # The folder moved, the web server did not follow: the remembered URLs answer 404.
    shutil.rmtree(service.root / "published")
    service.recipe(["red jacket", "blue coat", "green scarf"])
    _publish_line(
        service, f"publish: {{kind: static, dir: moved, base_url: '{service.static.url}'}}"
    )
    result = service.run_json()
    err = result["_stderr"]
    assert result["_exit"] == 1
    assert len(service.fake.submissions) == 1  # nothing more was submitted
    assert "does not serve it (HTTP 404)" in err and "Nothing was submitted" in err
    assert "assets/dance.mp4" in err or "assets/hero.png" in err  # the file...
    assert f"{service.static.url}/" in err  # ...its URL...
    assert "make the web server serve the folder" in err and "moved" in err  # ...the fix
    again = service.run_json("--retry-failed")
    assert again["_exit"] == 1
    assert len(service.fake.submissions) == 1


@pytest.mark.fake(faults=Faults(fail_jobs=1))
@pytest.mark.slow
def test_retry_failed_is_refused_while_the_references_are_unreachable(service: Service) -> None:
    service.recipe(["red jacket"])
    assert service.run_json()["_exit"] == 1  # the service failed the job (and charged)
    assert len(service.fake.submissions) == 1
    service.static.stop()  # the web server is gone
    retried = service.run_json("--retry-failed")
    assert retried["_exit"] == 1
    err = retried["_stderr"]
    assert "does not serve it" in err and "ConnectError" in err, err
    assert len(service.fake.submissions) == 1  # not charged a second time


@pytest.mark.fake(fetch_references=False)
@pytest.mark.slow
def test_each_reference_is_checked_once_per_run_however_many_jobs_use_it(
    service: Service,
) -> None:
    service.recipe(["red jacket"])
    assert service.run_json()["_exit"] == 0
    assert service.static.requests == 2  # image and video: one check each (HEAD is refused)
    outfits = [f"outfit {i}" for i in range(6)]
    service.recipe(outfits)
    result = service.run_json()
    assert result["_exit"] == 0, result["_stderr"]
    assert result["jobs_submitted"] == 6
    assert service.static.requests == 4  # 6 jobs, still one check per reference


@pytest.mark.slow
def test_an_upload_the_service_no_longer_serves_is_uploaded_again(tmp_path: Path) -> None:
    root, cache = new_project(tmp_path)
    svc = make_service(root, cache, store_dir=tmp_path / "fake")
    try:
        svc.recipe(["red jacket"])
        _publish_line(svc, "publish: {kind: empiriolabs-upload}")
        assert svc.run_json()["_exit"] == 0
        assert svc.fake.requests[("POST", UPLOAD_PATH)] == 2
        for upload in (tmp_path / "fake" / "files").glob("*-*.*"):  # uploads keep their names
            if upload.name.endswith(("-hero.png", "-dance.mp4")):
                upload.unlink()
        svc.recipe(["red jacket", "blue coat"])
        _publish_line(svc, "publish: {kind: empiriolabs-upload}")
        result = svc.run_json()
        assert result["_exit"] == 0, result["_stderr"]  # before: submitted against a 404
        assert svc.fake.requests[("POST", UPLOAD_PATH)] == 4
        assert len(svc.fake.submissions) == 2
    finally:
        svc.static.stop()
        svc.fake.stop()


@pytest.fixture
def s3_bucket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    """A moto S3 server on loopback with one empty bucket: (endpoint, bucket)."""
    pytest.importorskip("moto", reason="install the dev extra: pip install -e '.[dev]'")
    import boto3
    from moto.server import ThreadedMotoServer

    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="refs")
    try:
        yield endpoint, "refs"
    finally:
        server.stop()


@pytest.mark.slow
def test_an_s3_object_deleted_by_a_lifecycle_rule_is_uploaded_again(
    s3_bucket: tuple[str, str], tmp_path: Path
) -> None:
    import boto3

    from motionflow.publish.s3 import S3Publisher

    endpoint, bucket = s3_bucket
    file = tmp_path / "clip.mp4"
    file.write_bytes(b"reference clip bytes" * 8)
    artifact = FileArtifact(digest_file(file), file, ".mp4")
    memo = _Memo()

    async def one_run() -> tuple[str, PublishedUrls]:
        urls = PublishedUrls(S3Publisher(bucket=bucket, endpoint_url=endpoint), memo)
        try:
            return await urls.url(artifact), urls
        finally:
            await urls.publisher.aclose()

    first, _ = asyncio.run(one_run())
    remembered, run = asyncio.run(one_run())
    assert remembered == first and (run.published, run.checked) == (0, 1)
    client = boto3.client("s3", endpoint_url=endpoint)
    client.delete_object(Bucket=bucket, Key=S3Publisher(bucket=bucket).key(artifact))
    fresh, run = asyncio.run(one_run())  # the presigned URL is still "valid" but answers 404
    assert (run.published, run.checked) == (1, 2)
    with httpx.Client(trust_env=False) as http:
        assert http.get(fresh).content == file.read_bytes()


# -- the URL check itself, over a mock transport ---------------------------------------------------


def _server(
    body: bytes, *, head: int = 405, status: int = 200, seen: list[httpx.Request] | None = None
) -> httpx.MockTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        if request.method == "HEAD":
            return httpx.Response(head, headers={"Content-Length": str(len(body))})
        if status != 200:
            return httpx.Response(status)
        if "range" in request.headers:
            part = body[:16]
            headers = {"Content-Range": f"bytes 0-{len(part) - 1}/{len(body)}"}
            return httpx.Response(206, content=part, headers=headers)
        return httpx.Response(200, content=body)

    return httpx.MockTransport(answer)


def test_url_problem_asks_head_then_a_ranged_get_and_compares(tmp_path: Path) -> None:
    file = tmp_path / "a.mp4"
    file.write_bytes(b"0123456789abcdef" * 10)
    body = file.read_bytes()
    url = "https://cdn.example/a.mp4?X-Amz-Signature=secret"

    def ask(transport: httpx.MockTransport) -> str | None:
        return asyncio.run(url_problem(url, file, transport=transport))

    seen: list[httpx.Request] = []
    assert ask(_server(body, head=200, seen=seen)) is None
    assert [r.method for r in seen] == ["HEAD"]
    seen.clear()
    assert ask(_server(body, head=403, seen=seen)) is None  # presigned GET URLs refuse HEAD
    assert [r.method for r in seen] == ["HEAD", "GET"]
    assert seen[1].headers["range"] == "bytes=0-15"
    assert not any("authorization" in r.headers or "x-api-key" in r.headers for r in seen)
    assert ask(_server(body, status=404)) == "HTTP 404"
    assert ask(_server(body + b"x")) == f"it serves {len(body) + 1} bytes, the file has {len(body)}"
    assert ask(_server(b"X" + body[1:])) == "it serves other bytes than the file"
    assert asyncio.run(url_problem("uploads/a.mp4", file)) is None  # not http(s): not asked


class _Folder:
    """A publisher with a URL per publish, like presigned URLs; ``gone`` makes URLs 404."""

    kind = "test"
    identity = "test:folder"
    serve_hint = "fix the test folder"

    def __init__(self) -> None:
        self.publishes = 0
        self.live: set[str] = set()

    async def publish(self, artifact: FileArtifact) -> Published:
        self.publishes += 1
        url = f"https://files.example/{self.publishes}/{published_name(artifact)}"
        self.live.add(url)
        return Published(url)

    async def aclose(self) -> None:
        pass


class _Memo(dict[str, object]):
    def set(self, name: str, value: object) -> None:
        self[name] = value


def _urls(folder: _Folder, memo: _Memo, artifact: FileArtifact) -> PublishedUrls:
    body = artifact.path.read_bytes()

    def answer(request: httpx.Request) -> httpx.Response:
        if str(request.url) not in folder.live:
            return httpx.Response(404)
        return httpx.Response(200, content=body)

    async def check(url: str, path: Path) -> str | None:
        return await url_problem(url, path, transport=httpx.MockTransport(answer))

    return PublishedUrls(folder, memo, check=check)


def test_a_sweep_checks_a_reference_once_and_a_stale_url_is_replaced(tmp_path: Path) -> None:
    file = tmp_path / "clip.mp4"
    file.write_bytes(b"not really a video, but bytes" * 4)
    artifact = FileArtifact(digest_file(file), file, ".mp4")
    folder, memo = _Folder(), _Memo()

    async def sweep(urls: PublishedUrls) -> set[str]:
        return set(await asyncio.gather(*(urls.url(artifact) for _ in range(100))))

    first = _urls(folder, memo, artifact)
    (url,) = asyncio.run(sweep(first))
    assert (folder.publishes, first.checked) == (1, 1)
    second = _urls(folder, memo, artifact)  # the next run remembers the URL
    assert asyncio.run(sweep(second)) == {url}
    assert (folder.publishes, second.checked) == (1, 1)
    folder.live.clear()  # the object expired at the store
    third = _urls(folder, memo, artifact)
    (fresh,) = asyncio.run(sweep(third))
    assert fresh != url and folder.publishes == 2
    assert third.checked == 2  # the stale URL, then the new one; once for 100 jobs
    assert memo[f"publish:test:folder:{artifact.digest}"] == {"url": fresh, "expires_at": None}


def test_a_url_that_never_serves_is_refused_once_per_run(tmp_path: Path) -> None:
    file = tmp_path / "clip.mp4"
    file.write_bytes(b"bytes" * 10)
    artifact = FileArtifact(digest_file(file), file, ".mp4")
    folder, memo = _Folder(), _Memo()
    urls = _urls(folder, memo, artifact)
    folder.live = _NeverServes()

    async def sweep() -> list[BaseException | str]:
        return await asyncio.gather(
            *(urls.url(artifact) for _ in range(20)), return_exceptions=True
        )

    outcomes = asyncio.run(sweep())
    assert all(isinstance(o, PublishError) for o in outcomes)
    message = str(outcomes[0])
    assert str(file) in message and "https://files.example/1/" in message
    assert "HTTP 404" in message and "fix the test folder" in message
    assert (folder.publishes, urls.checked) == (1, 1)
    assert memo[f"publish:test:folder:{artifact.digest}"] is None  # not remembered


class _NeverServes(set[str]):
    def add(self, url: str) -> None:
        pass
