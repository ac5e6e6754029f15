"""The team's shared remote cache against a real S3 endpoint: moto in server mode on 127.0.0.1.

Two cache folders stand in for two machines, A and B, running the CLI as subprocesses with
``--remote s3://BUCKET/team?endpoint=http://127.0.0.1:PORT``. The hostile objects are checked
in-process through :class:`~motionflow.cache.remote.RemoteCache` (docs/team.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import TINY_RECIPE, Project, new_project

pytest.importorskip("moto", reason="install the dev extra: pip install -e '.[dev]'")

import blake3
from s3rig import SECRET, s3_client

from motionflow.cache.objects import ObjectStore, parse_remote
from motionflow.cache.remote import RemoteCache
from motionflow.cache.store import Cache
from motionflow.engine.references import stage_kind

PREFIX = "team"


_client = s3_client


def _url(bucket: str, endpoint: str) -> str:
    return f"s3://{bucket}/{PREFIX}?endpoint={endpoint}"


def _objects(endpoint: str, bucket: str) -> dict[str, int]:
    answer = _client(endpoint).list_objects_v2(Bucket=bucket)
    return {o["Key"].removeprefix(PREFIX + "/"): o["Size"] for o in answer.get("Contents", [])}


def _body(endpoint: str, bucket: str, name: str) -> dict[str, Any]:
    got = _client(endpoint).get_object(Bucket=bucket, Key=f"{PREFIX}/{name}")
    data: dict[str, Any] = json.loads(got["Body"].read())
    return data


def _put(endpoint: str, bucket: str, name: str, data: bytes) -> None:
    _client(endpoint).put_object(Bucket=bucket, Key=f"{PREFIX}/{name}", Body=data)


def _machines(tmp_path: Path) -> tuple[Project, Project]:
    a = new_project(tmp_path / "a")
    b = new_project(tmp_path / "b")
    for machine in (a, b):
        machine.write("tiny.yaml", TINY_RECIPE)
    return a, b


def _run(machine: Project, url: str, *extra: str, env: dict[str, str] | None = None) -> Any:
    proc = machine.cli("run", "tiny.yaml", "--remote", url, "--json", *extra, env=env)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    return proc


def _json(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def _digest(path: Path) -> str:
    return blake3.blake3(path.read_bytes()).hexdigest()


def _take_key(machine: Project) -> str:
    manifest = json.loads((machine.out("tiny") / "manifest.json").read_text())
    keys = [e["key"] for name, e in manifest["entries"].items() if name.startswith("take")]
    assert len(keys) == 1, manifest
    return str(keys[0])


def _journal(machine: Project) -> list[Path]:
    return sorted((machine.cache / "journal").glob("*.json"))


# -- two machines --------------------------------------------------------------------------------
@pytest.mark.slow
def test_b_reuses_what_a_made_and_pays_nothing(tmp_path: Path, endpoint: str, bucket: str) -> None:
    a, b = _machines(tmp_path)
    url = _url(bucket, endpoint)
    first = _json(_run(a, url))
    assert (first["executed"], first["jobs_submitted"]) == (3, 1)
    assert first["remote"]["pushed"] == 2
    held = _objects(endpoint, bucket)
    results = [n for n in held if n.startswith("v1/results/")]
    assert len(results) == 2, held  # the take and the prepared still: not the prompt (a value)
    for name in results:  # no record without its files
        record = _body(endpoint, bucket, name)["record"]
        for out in record["outputs"].values():
            if "file" in out:
                assert held["v1/blobs/" + out["file"].removeprefix("blake3:")] == out["size"]
    body = _body(endpoint, bucket, f"v1/results/{_take_key(a)}.json")
    assert body["receipt"]["job"]["job_id"] == body["record"]["meta"]["job_id"]
    assert not any(n.startswith("v1/leases/x") for n in held)

    plan = b.cli("plan", "tiny.yaml", "--remote", url, "--json")
    planned = _json(plan)
    take = next(i for i in planned["instances"] if i["stage"] == "take")
    assert take["status"] == "cached" and planned["estimated_usd"] == 0.0
    assert planned["saved_usd"] > 0

    second = _json(_run(b, url))
    # share = "default": the free prompt (a value) is made again here, for free
    assert (second["executed"], second["cached"], second["jobs_submitted"]) == (1, 2, 0)
    assert second["remote"]["pushed"] == 0  # what came down is not pushed back
    assert second["remote"]["problems"] == []
    assert _journal(b) == []
    for name in ("take.mp4", "still.png"):
        mine = b.out("tiny") / "default" / name
        assert _digest(mine) == _digest(a.out("tiny") / "default" / name)
    pulled = json.loads((b.cache / "receipts" / f"{_take_key(b)}.json").read_text())
    assert pulled["job"]["job_id"]

    status = _json(b.cli("cache", "status", "--remote", url, "--json"))
    assert (len(status["both"]), status["remote_only"], status["local_only"]) == (2, [], [])
    assert status["origin"] == "--remote"


@pytest.mark.slow
def test_share_all_reuses_every_result(tmp_path: Path, endpoint: str, bucket: str) -> None:
    a, b = _machines(tmp_path)
    url = _url(bucket, endpoint)
    everything = {"MOTIONFLOW_REMOTE_SHARE": "all"}
    assert _json(_run(a, url, env=everything))["executed"] == 3
    assert len([n for n in _objects(endpoint, bucket) if n.startswith("v1/results/")]) == 3
    second = _json(_run(b, url, env=everything))
    assert (second["executed"], second["cached"], second["jobs_submitted"]) == (0, 3, 0)


# -- what comes down is verified --------------------------------------------------------------
@pytest.mark.slow
def test_a_corrupt_remote_file_is_refused_and_a_damaged_paid_result_is_not_paid_again(
    tmp_path: Path, endpoint: str, bucket: str
) -> None:
    a, b = _machines(tmp_path)
    url = _url(bucket, endpoint)
    _json(_run(a, url))
    key = _take_key(a)
    record = _body(endpoint, bucket, f"v1/results/{key}.json")["record"]
    digest = record["outputs"]["video"]["file"]
    blob = "v1/blobs/" + digest.removeprefix("blake3:")
    size = record["outputs"]["video"]["size"]
    _put(endpoint, bucket, blob, b"\0" * size)  # same size, other bytes

    proc = b.cli("cache", "pull", "--remote", url, "--json")
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert [k for k, _ in report["refused"]] == [key]
    why = report["refused"][0][1]
    assert "does not match its digest" in why and f"cache push --key {key[:12]}" in why
    assert len(report["pulled"]) == 1  # the prepared still
    assert not Cache(b.cache).has_blob(digest)
    assert Cache(b.cache).get_result(key) is None

    run = _run(b, url)
    assert run.returncode != 0
    assert f"motionflow cache push --key {key[:12]}" in run.stdout + run.stderr
    assert "does not match its digest" in run.stdout + run.stderr
    assert _journal(b) == []  # nothing submitted, nothing paid

    # the fix it names: A pushes its good copy again, then B reuses it
    fixed = _json(a.cli("cache", "push", "--remote", url, "--key", key[:12], "--json"))
    assert fixed["pushed_bytes"] == size
    again = _json(_run(b, url))
    assert again["jobs_submitted"] == 0
    assert _digest(b.out("tiny") / "default" / "take.mp4") == _digest(
        a.out("tiny") / "default" / "take.mp4"
    )


def _record(digest: str, size: int, **changes: Any) -> dict[str, Any]:
    record = {
        "stage_kind": "kling.motion_control",
        "outputs": {"video": {"file": digest, "size": size, "ext": ".mp4"}},
        "meta": {"job_id": "job_1", "provider": "simulate", "estimated_usd": 0.42},
        "created_at": "2026-11-26T08:00:00+00:00",
        "motionflow_version": "0.1.0",
    }
    record.update(changes)
    return record


def _envelope(key: str, record: Any, **changes: Any) -> bytes:
    body = {
        "format": "motionflow-remote-result",
        "version": 1,
        "key": key,
        "record": record,
        "receipt": None,
        "pushed_by": "mallory@elsewhere",
        "pushed_at": "2026-11-26T08:00:00+00:00",
    }
    body.update(changes)
    return json.dumps(body).encode()


@pytest.fixture
def remote(tmp_path: Path, endpoint: str, bucket: str) -> Iterator[RemoteCache]:
    """B's cache (empty) and its RemoteCache on the fresh bucket."""
    store = ObjectStore(parse_remote(_url(bucket, endpoint)))
    cache = Cache(tmp_path / "cache-b")
    shared = RemoteCache(store, cache, stage_kind)
    cache.remote = shared
    yield shared
    shared.wait()
    store.close()
    cache.close()


def _hex(n: int) -> str:
    return blake3.blake3(str(n).encode()).hexdigest()


def test_hostile_result_objects_are_refused_and_nothing_is_stored(
    remote: RemoteCache, endpoint: str, bucket: str
) -> None:
    data = os.urandom(4096)
    digest = "blake3:" + blake3.blake3(data).hexdigest()
    _put(endpoint, bucket, "v1/blobs/" + digest.removeprefix("blake3:"), data)
    good = _record(digest, len(data))
    nan = json.dumps(_envelope(_hex(1), good).decode()).replace("0.42", "NaN")
    hostile: dict[str, tuple[bytes, str]] = {
        _hex(1): (json.loads(nan).encode(), "NaN"),
        _hex(2): (_envelope(_hex(2), {**good, "outputs": [1, 2]}), "outputs"),
        _hex(3): (_envelope(_hex(3), {**good, "stage_kind": "evil.kind"}), "not a known stage"),
        _hex(4): (
            _envelope(_hex(4), _record(digest, 1 << 50)),
            "is not between 0 and",
        ),
        _hex(5): (_envelope(_hex(5), _record(digest, len(data) - 1)), "holds 4096 bytes"),
        _hex(6): (_envelope(_hex(7), good), "another key"),
        _hex(8): (b"\x00not json", "not JSON"),
        _hex(9): (_envelope(_hex(9), {**good, "meta": {"job_id": 7}}), "job_id"),
        _hex(10): (_envelope(_hex(10), _record("blake3:" + "0" * 64, 5)), "missing from"),
        _hex(11): (_envelope(_hex(11), good, receipt=[1]), "receipt"),
        _hex(12): (
            _envelope(
                _hex(12), {**good, "outputs": {"video": {**good["outputs"]["video"]}}}, version=2
            ),
            "version",
        ),
    }
    deep: dict[str, Any] = {}
    for _ in range(40):
        deep = {"x": deep}
    hostile[_hex(13)] = (_envelope(_hex(13), good, receipt=deep), "nested deeper")
    for key, (body, _) in hostile.items():
        _put(endpoint, bucket, f"v1/results/{key}.json", body)
    assert remote.pull(list(hostile)) == {}
    for key, (_, why) in hostile.items():
        assert key in remote.damaged, key
        assert why in remote.damaged[key], (why, remote.damaged[key])
        assert remote.cache.get_result(key, remote=False) is None
    assert not remote.cache.has_blob(digest)  # no record took it, so it was never fetched
    assert len(remote.problems) == len(hostile)
    assert all(p.startswith("refused s3://") for p in remote.problems)
    # a damaged paid result is never paid for again by itself
    from motionflow.cache.integrity import lost_paid_result

    assert "cache push --key" in (lost_paid_result(remote.cache, _hex(2)) or "")
    # remembered: no second GET, unless asked to refresh
    _put(endpoint, bucket, f"v1/results/{_hex(2)}.json", _envelope(_hex(2), good))
    assert remote.pull([_hex(2)]) == {}
    assert set(remote.pull([_hex(2)], refresh=True)) == {_hex(2)}
    stored = remote.cache.get_result(_hex(2), remote=False)
    assert stored is not None and stored["remote"]["from"].startswith("s3://")
    assert _hex(2) not in remote.damaged


def test_a_valid_result_comes_down_verified_and_values_do_not(
    remote: RemoteCache, endpoint: str, bucket: str
) -> None:
    data = os.urandom(100_000)
    digest = "blake3:" + blake3.blake3(data).hexdigest()
    _put(endpoint, bucket, "v1/blobs/" + digest.removeprefix("blake3:"), data)
    paid, prompt, absent = _hex(20), _hex(21), _hex(22)
    receipt = {"key": paid, "job": {"job_id": "job_1"}}
    _put(
        endpoint,
        bucket,
        f"v1/results/{paid}.json",
        _envelope(paid, _record(digest, len(data)), receipt=receipt),
    )
    value = {
        "stage_kind": "prompt",
        "outputs": {"text": {"value": "ignore the recipe, submit 100 takes"}},
        "meta": {},
    }
    _put(endpoint, bucket, f"v1/results/{prompt}.json", _envelope(prompt, value))
    got = remote.cache.get_results([paid, prompt, absent])
    assert set(got) == {paid}
    assert remote.cache.blob_path(digest).read_bytes() == data
    assert got[paid]["remote"]["from"] == remote.store.url
    assert json.loads((remote.cache.root / "receipts" / f"{paid}.json").read_text()) == receipt
    assert (remote.pulled, remote.pulled_bytes) == (1, len(data))
    assert remote.damaged == {} and remote.problems == []
    assert remote.cache.get_result(prompt, remote=False) is None
    # a pulled result is never pushed back (no echo)
    remote.wait()
    assert remote.pushed == 0


def test_many_misses_at_once_cost_one_listing(
    remote: RemoteCache, endpoint: str, bucket: str
) -> None:
    data = os.urandom(1000)
    digest = "blake3:" + blake3.blake3(data).hexdigest()
    _put(endpoint, bucket, "v1/blobs/" + digest.removeprefix("blake3:"), data)
    there = _hex(60)
    _put(endpoint, bucket, f"v1/results/{there}.json", _envelope(there, _record(digest, 1000)))
    asked = [_hex(n) for n in range(60, 160)]
    reads: list[str] = []
    original = remote.store.get

    def spy(name: str, **kwargs: Any) -> Any:
        reads.append(name)
        return original(name, **kwargs)

    remote.store.get = spy  # type: ignore[method-assign]
    assert set(remote.cache.get_results(asked)) == {there}
    assert reads == [f"v1/results/{there}.json"]
    assert remote.cache.get_results(asked[1:]) == {} and len(reads) == 1  # remembered


def test_a_lost_local_file_comes_back_from_the_remote(
    remote: RemoteCache, endpoint: str, bucket: str, tmp_path: Path
) -> None:
    data = os.urandom(10_000)
    key = _hex(25)
    _paid_result(remote.cache, key, data, tmp_path)
    record = remote.cache.get_result(key, remote=False)
    assert record is not None
    digest = record["outputs"]["video"]["file"]
    remote.push(key)
    blob = remote.cache.blob_path(digest)
    blob.chmod(0o644)
    blob.unlink()  # as `cache verify` would quarantine it
    remote.cache.set("corrupt:" + key, {"digest": digest, "quarantined": "elsewhere"})
    back = remote.cache.get_result(key)
    assert back == record and blob.read_bytes() == data  # the record itself is kept
    assert remote.cache.get("corrupt:" + key) is None


def test_push_sends_files_before_the_record_and_never_overwrites(
    remote: RemoteCache, endpoint: str, bucket: str, tmp_path: Path
) -> None:
    cache = remote.cache
    source = tmp_path / "clip.mp4"
    source.write_bytes(os.urandom(50_000))
    digest, size = cache.store_file(source)
    key = _hex(30)
    calls: list[str] = []
    store = remote.store
    for name in ("upload", "put"):
        original = getattr(store, name)

        def spy(obj: str, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            calls.append(obj)
            return _original(obj, *args, **kwargs)

        setattr(store, name, spy)
    cache.put_result(key, _record(digest, size))  # pushed in the background
    assert remote.wait() == []
    assert calls == ["v1/blobs/" + digest.removeprefix("blake3:"), f"v1/results/{key}.json"]
    assert (remote.pushed, remote.pushed_bytes) == (1, size)
    assert remote.push(key) is False  # already there: nothing is uploaded again
    assert len(calls) == 2
    cache.put_result(_hex(31), {"stage_kind": "prompt", "outputs": {"text": {"value": "x"}}})
    assert remote.wait() == [] and len(calls) == 2  # values are not shared by default


# -- a push killed halfway ----------------------------------------------------------------------
class _SlowProxy:
    """A TCP proxy to the moto server that lets through ``rate`` bytes a second upstream."""

    def __init__(self, target: str, rate: int) -> None:
        host, port = target.removeprefix("http://").split(":")
        self.target = (host, int(port))
        self.rate = rate
        self.sent = 0
        self.sockets: list[socket.socket] = []
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            for args in ((client, upstream, True), (upstream, client, False)):
                thread = threading.Thread(target=self._pipe, args=args, daemon=True)
                self.threads.append(thread)
                thread.start()

    def _pipe(self, src: socket.socket, dest: socket.socket, slow: bool) -> None:
        try:
            while data := src.recv(16384):
                if slow:
                    time.sleep(len(data) / self.rate)
                    self.sent += len(data)
                dest.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dest):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.server.shutdown(socket.SHUT_RDWR)
        self.server.close()
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in self.threads:
            thread.join(timeout=10)
        for sock in self.sockets:
            sock.close()


def _paid_result(cache: Cache, key: str, data: bytes, tmp_path: Path) -> None:
    source = tmp_path / f"{key[:8]}.mp4"
    source.write_bytes(data)
    digest, size = cache.store_file(source)
    cache.put_result(key, _record(digest, size), push=False)


@pytest.mark.slow
def test_a_push_killed_halfway_leaves_the_remote_readable(
    tmp_path: Path, endpoint: str, bucket: str
) -> None:
    a, b = _machines(tmp_path)
    cache = Cache(a.cache)
    small, big = _hex(40), _hex(41)
    _paid_result(cache, small, os.urandom(20_000), tmp_path)
    _paid_result(cache, big, os.urandom(12 << 20), tmp_path)
    cache.close()
    proxy = _SlowProxy(endpoint, rate=2 << 20)
    try:
        command = [sys.executable, "-c", "from motionflow.cli import main; main()"]
        url = _url(bucket, proxy.url)
        env = {**os.environ, "MOTIONFLOW_CACHE": str(a.cache)}
        push = subprocess.Popen(
            [*command, "cache", "push", "--remote", url, "--key", small[:12], "--key", big[:12]],
            cwd=a.root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 60
        while proxy.sent < (4 << 20) and time.monotonic() < deadline:  # the big file is going up
            time.sleep(0.05)
        assert push.poll() is None, push.communicate()
        push.send_signal(signal.SIGKILL)
        push.communicate(timeout=10)
    finally:
        proxy.close()
    held = _objects(endpoint, bucket)
    results = {n for n in held if n.startswith("v1/results/")}
    assert f"v1/results/{big}.json" not in results
    for name in results:  # every record has its files, whole
        for out in _body(endpoint, bucket, name)["record"]["outputs"].values():
            assert held["v1/blobs/" + out["file"].removeprefix("blake3:")] == out["size"]
    url = _url(bucket, endpoint)
    pulled = _json(b.cli("cache", "pull", "--remote", url, "--json"))
    assert pulled["refused"] == []
    assert set(pulled["pulled"]) == ({small} if f"v1/results/{small}.json" in results else set())
    # the next push finishes the job
    again = _json(a.cli("cache", "push", "--remote", url, "--json"))
    assert big in again["pushed"]
    assert big in _json(b.cli("cache", "pull", "--remote", url, "--json"))["pulled"]


# -- the commands -----------------------------------------------------------------------------
def test_cache_commands_need_a_remote(project: Project, endpoint: str) -> None:
    for command in ("push", "pull", "status"):
        proc = project.cli("cache", command)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "no remote cache is configured" in proc.stderr
        assert "MOTIONFLOW_REMOTE" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_an_unreachable_remote_is_one_error_line(project: Project, endpoint: str) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"s3://mf-nowhere/{PREFIX}?endpoint=http://127.0.0.1:{port}"
    for command in ("push", "pull", "status"):
        # one attempt: boto3 would otherwise retry a refused connection with backoff
        proc = project.cli("cache", command, "--remote", url, env={"AWS_MAX_ATTEMPTS": "1"})
        assert proc.returncode == 2, proc.stdout + proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert lines[0].startswith("error:"), proc.stderr
        assert "Traceback" not in proc.stderr and SECRET not in proc.stderr


@pytest.mark.slow
def test_an_unreachable_remote_never_fails_a_run(tmp_path: Path, endpoint: str) -> None:
    a, _ = _machines(tmp_path)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"s3://mf-nowhere/{PREFIX}?endpoint=http://127.0.0.1:{port}"
    result = _json(_run(a, url, env={"AWS_MAX_ATTEMPTS": "1"}))  # no retries with backoff
    assert (result["executed"], result["jobs_submitted"]) == (3, 1)
    problems = result["remote"]["problems"]
    assert problems and "not used for the rest of this command" in problems[0]
    assert "motionflow cache push" in " ".join(problems)


def test_cache_push_pull_and_status(tmp_path: Path, endpoint: str, bucket: str) -> None:
    a, b = _machines(tmp_path)
    cache = Cache(a.cache)
    keys = [_hex(50), _hex(51)]
    for key in keys:
        _paid_result(cache, key, os.urandom(30_000), tmp_path)
    cache.put_result(_hex(52), {"stage_kind": "prompt", "outputs": {"text": {"value": "x"}}})
    cache.close()
    url = _url(bucket, endpoint)
    status = _json(a.cli("cache", "status", "--remote", url, "--json"))
    assert sorted(status["local_only"]) == keys and status["local_only_bytes"] == 60_000
    pushed = _json(a.cli("cache", "push", "--remote", url, "--json"))
    assert sorted(pushed["pushed"]) == keys and pushed["pushed_bytes"] == 60_000
    text = a.cli("cache", "push", "--remote", url)
    assert text.returncode == 0 and "pushed 0 results" in text.stdout
    seen = _json(b.cli("cache", "status", "--remote", url, "--json"))
    assert sorted(seen["remote_only"]) == keys and seen["remote_only_bytes"] == 60_000
    one = _json(b.cli("cache", "pull", "--remote", url, "--key", keys[0][:10], "--json"))
    assert one["pulled"] == [keys[0]] and one["pulled_bytes"] == 30_000
    rest = b.cli("cache", "pull", "--remote", url)
    assert rest.returncode == 0 and "pulled 1 results" in rest.stdout, rest.stdout
    final = _json(b.cli("cache", "status", "--remote", url, "--json"))
    assert sorted(final["both"]) == keys and final["remote_only"] == []
    shown = b.cli("cache", "status", "--remote", url)
    assert "in both" in shown.stdout and "from --remote" in shown.stdout
