"""Single flight across machines: two "laptops" with their own caches, one shared S3 remote.

Each machine is the real CLI in a subprocess (``provider: empiriolabs`` against one fake
server, its own project copy and ``--cache``), both with ``--remote`` on a moto S3 server on
127.0.0.1. What is asserted is what the fake service was asked to bill (``submissions``, by
prompt and by ``Idempotency-Key``), the files each machine ends with, exit codes and messages.

The lease state machine itself is checked with Hypothesis against an in-memory store with S3's
conditional-write semantics (atomic ``If-None-Match: *`` / ``If-Match``, MD5 etags).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from motionflow.cache.lease import (
    NEXT,
    RANK,
    Blocked,
    Follow,
    Lease,
    LeaseMoved,
    Leases,
    Ticket,
    Won,
    decide,
    lease_name,
)
from motionflow.cache.objects import Conflict, ObjectInfo

# -- the lease state machine, against an in-memory store ---------------------------------------


class MemoryStore:
    """An object store with S3's conditional writes, atomic, and its own clock."""

    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, str, datetime]] = {}
        self.now = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
        self._lock = threading.Lock()

    def where(self) -> str:
        return "mem://team/"

    def server_now(self) -> datetime:
        return self.now

    def get(self, name: str, *, max_bytes: int) -> tuple[bytes, ObjectInfo] | None:
        with self._lock:
            found = self.objects.get(name)
        if found is None:
            return None
        data, etag, modified = found
        assert len(data) <= max_bytes
        return data, ObjectInfo(etag, len(data), modified)

    def put(
        self, name: str, data: bytes, *, if_none_match: bool = False, if_match: str | None = None
    ) -> str:
        with self._lock:
            current = self.objects.get(name)
            if if_none_match and current is not None:
                raise Conflict(name)
            if if_match is not None:
                if current is None:
                    raise FileNotFoundError(name)
                if current[1] != if_match:
                    raise Conflict(name)
            etag = f'"{hashlib.md5(data).hexdigest()}"'
            self.objects[name] = (data, etag, self.now)
            return etag


@dataclass
class _Flags:
    resubmit_in_doubt: bool = False
    resubmit_lost: bool = False
    retry_failed: bool = False


KEYS = ("a" * 64, "b" * 64)
HOLDERS = 3
WAIT = 60.0
TAKEOVER_FROM = {"claimed", "released", "submitting", "in_doubt", "failed", "lost"}


class LeaseMachine(RuleBasedStateMachine):
    """Three machines read, decide and write the leases of two keys in any interleaving."""

    def __init__(self) -> None:
        super().__init__()
        self.store = MemoryStore()
        skews = (timedelta(0), timedelta(minutes=7), timedelta(minutes=-11))  # their clocks
        self.leases = [
            Leases(
                self.store,
                holder=f"m{i}",
                wait_seconds=WAIT,
                clock=lambda skew=skews[i]: self.store.now + skew,
            )
            for i in range(HOLDERS)
        ]
        self.views: dict[tuple[int, str], Lease | None] = {}
        self.tickets: dict[tuple[int, str], Ticket] = {}
        self.winners: dict[tuple[str, int], set[int]] = {}
        self.posts: dict[tuple[str, int], set[int]] = {}
        self.seen: dict[str, Lease] = {}
        self.jobs = 0

    @rule(h=st.integers(0, HOLDERS - 1), k=st.sampled_from(KEYS))
    def read(self, h: int, k: str) -> None:
        self.views[(h, k)] = self.leases[h].read(k)

    @rule(
        h=st.integers(0, HOLDERS - 1),
        k=st.sampled_from(KEYS),
        doubt=st.booleans(),
        lost=st.booleans(),
        failed=st.booleans(),
    )
    def act(self, h: int, k: str, doubt: bool, lost: bool, failed: bool) -> None:
        if (h, k) not in self.views:
            return
        seen = self.views[(h, k)]
        flags = _Flags(doubt, lost, failed)
        outcome = self.leases[h].act(
            k,
            seen,
            label="take",
            recipe="r",
            estimated_usd=0.42,
            attempt=0,
            idempotency_key=f"mf-{k[:40]}-0",
            flags=flags,
        )
        expected = decide(seen, wait_seconds=WAIT, flags=flags)
        own = seen is not None and seen.holder == f"m{h}" and seen.state == "claimed"
        if isinstance(outcome, Won) and own:  # its own claim (a create retried): no new version
            assert seen is not None and outcome.ticket.lease.epoch == seen.epoch
            assert self.winners.get((k, seen.epoch)) == {h}
            self.tickets[(h, k)] = outcome.ticket
        elif isinstance(outcome, Won):
            assert expected in {"claim", "takeover"}
            lease = outcome.ticket.lease
            assert lease.holder == f"m{h}"
            epoch_winners = self.winners.setdefault((k, lease.epoch), set())
            epoch_winners.add(h)
            assert len(epoch_winners) == 1, f"two claimers won {k[:4]} epoch {lease.epoch}"
            if seen is not None:  # a takeover: only from a state that allows one
                assert lease.epoch == seen.epoch + 1
                assert seen.state in TAKEOVER_FROM
                if seen.state in {"submitting", "in_doubt"}:
                    assert doubt and lease.idempotency_key == seen.idempotency_key
                if seen.state == "failed":
                    assert failed and lease.attempt == seen.attempt + 1
                if seen.state == "lost":
                    assert lost and lease.attempt == seen.attempt + 1
            self.tickets[(h, k)] = outcome.ticket
        elif isinstance(outcome, Follow):
            assert expected == "follow"
            assert outcome.lease.job_id
        elif isinstance(outcome, Blocked):
            assert expected in {"in_doubt", "failed", "lost"}
            assert outcome.lease is not None and outcome.lease.holder in outcome.message

    @rule(
        k=st.sampled_from(KEYS),
        order=st.permutations(list(range(HOLDERS))),
        doubt=st.booleans(),
        lost=st.booleans(),
        failed=st.booleans(),
    )
    def race(self, k: str, order: list[int], doubt: bool, lost: bool, failed: bool) -> None:
        """Every machine reads the same version, then each acts on what it read."""
        for h in range(HOLDERS):
            self.read(h, k)
        for h in order:
            self.act(h, k, doubt, lost, failed)

    @rule(
        h=st.integers(0, HOLDERS - 1),
        k=st.sampled_from(KEYS),
        state=st.sampled_from(
            ["submitting", "submitted", "in_doubt", "failed", "released", "stored", "lost"]
        ),
    )
    def advance(self, h: int, k: str, state: str) -> None:
        ticket = self.tickets.get((h, k))
        if ticket is None or ticket.moved or state not in NEXT[ticket.lease.state]:
            return
        changes: dict[str, Any] = {}
        if state == "submitted":
            self.jobs += 1
            changes["job_id"] = f"job-{self.jobs}"
        try:
            self.leases[h].write(ticket, state, **changes)
        except LeaseMoved:
            assert ticket.moved
            return
        if state == "submitting":  # the holder may POST now: only one per lease version
            posted = self.posts.setdefault((k, ticket.lease.epoch), set())
            posted.add(h)
            assert posted == {h}

    @rule(
        h=st.integers(0, HOLDERS - 1),
        k=st.sampled_from(KEYS),
        state=st.sampled_from(["submitted", "stored", "failed", "lost"]),
        same_submit=st.booleans(),
    )
    def settle(self, h: int, k: str, state: str, same_submit: bool) -> None:
        """A machine that fetched a job (or a holder back from a crash) reports it."""
        current = self.leases[h].read(k)
        if current is None:
            return
        if current.job_id:
            job = current.job_id if same_submit else "job-other"
        else:
            self.jobs += 1
            job = f"job-{self.jobs}"
        idem = current.idempotency_key if same_submit else "mf-other-0"
        changed = self.leases[h].settle_sync(k, job, state, idempotency_key=idem)
        if changed and not current.job_id:  # a job id only for its own, orphaned submit
            assert same_submit
            assert current.state == "in_doubt" or (
                current.state == "submitting" and current.age >= WAIT
            )

    @rule(h=st.integers(0, HOLDERS - 1), k=st.sampled_from(KEYS))
    def heartbeat(self, h: int, k: str) -> None:
        ticket = self.tickets.get((h, k))
        if ticket is None or ticket.moved or ticket.lease.state not in {"claimed", "submitting"}:
            return
        try:
            self.leases[h].write(ticket, ticket.lease.state)
        except LeaseMoved:
            assert ticket.moved

    @rule(seconds=st.sampled_from([1.0, 30.0, 61.0, 600.0]))
    def tick(self, seconds: float) -> None:
        self.store.now += timedelta(seconds=seconds)

    @precondition(lambda self: True)
    @invariant()
    def never_backwards(self) -> None:
        for k in KEYS:
            found = self.store.get(lease_name(k), max_bytes=1 << 16)
            if found is None:
                assert k not in self.seen
                continue
            now = Lease.parse(found[0], where=k)
            before = self.seen.get(k)
            if before is not None:
                assert now.epoch >= before.epoch
                if now.epoch == before.epoch:
                    assert now.state == before.state or now.state in NEXT[before.state]
                    assert RANK[now.state] >= RANK[before.state]
                    if before.job_id is not None:  # never replaced within a version
                        assert now.job_id == before.job_id
                    assert now.holder == before.holder
                else:  # a takeover, of a state that allows one, one version at a time
                    assert now.epoch == before.epoch + 1
                    assert before.state in TAKEOVER_FROM
                    assert not (before.state in {"submitted", "stored"} and before.job_id)
            if now.state in {"submitted", "stored"} or (now.state in {"failed", "lost"}):
                assert now.job_id is not None or now.state == "failed"
            self.seen[k] = now


TestLeaseMachine = LeaseMachine.TestCase
TestLeaseMachine.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None, derandomize=True, database=None
)


def test_decide_follows_a_job_and_never_submits_over_it() -> None:
    lease = Lease("k" * 64, "m1", "submitted", "mf-k-0", 0.42, "take", "r", "t", "t", "job-1")
    for flags in (_Flags(), _Flags(True, True, True)):
        assert decide(lease, wait_seconds=60, flags=flags) == "follow"
    lease.state, lease.job_id, lease.age = "submitting", None, 59.0
    assert decide(lease, wait_seconds=60, flags=_Flags(True, True, True)) == "wait"
    lease.age = 61.0
    assert decide(lease, wait_seconds=60, flags=_Flags()) == "in_doubt"
    assert decide(lease, wait_seconds=60, flags=_Flags(resubmit_in_doubt=True)) == "takeover"


# -- two machines, one remote: the CLI in subprocesses ------------------------------------------

moto = pytest.importorskip("moto", reason="install the dev extra: pip install -e '.[dev]'")

from s3rig import s3_client  # noqa: E402
from service import Service, make_service, new_project  # noqa: E402

from motionflow.fakeapi.faults import Faults  # noqa: E402
from motionflow.publish.fileserver import FileServer  # noqa: E402

_s3 = s3_client


OUTFITS = ["red jacket", "blue coat", "green scarf"]
PREFIX = "team"


@dataclass
class Team:
    """Two machines (A and B) on one fake service and one remote."""

    a: Service
    b: Service
    remote: str
    endpoint: str
    bucket: str

    def run(self, machine: Service, *args: str, env: dict[str, str] | None = None) -> Any:
        return machine.popen(
            "run",
            "paid.yaml",
            "--json",
            "--cache",
            str(machine.cache),
            "--remote",
            self.remote,
            *args,
            env=env,
        )

    def submits(self) -> dict[str, int]:
        return dict(self.a.submits_by_prompt())

    def leases(self) -> dict[str, dict[str, Any]]:
        s3 = _s3(self.endpoint)
        found = s3.list_objects_v2(Bucket=self.bucket, Prefix=f"{PREFIX}/v1/leases/")
        out = {}
        for item in found.get("Contents", []):
            body = s3.get_object(Bucket=self.bucket, Key=item["Key"])["Body"].read()
            data = json.loads(body)
            out[data["key"]] = data
        return out

    def put_lease(self, key: str, **fields: Any) -> None:
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        data = {
            "format": "motionflow-lease",
            "version": 1,
            "key": key,
            "holder": "laptop-a:4242:0badcafe",
            "state": "submitting",
            "idempotency_key": f"mf-{key[:40]}-0",
            "job_id": None,
            "estimated_usd": 0.42,
            "label": "take[red-jacket]",
            "recipe": "paid",
            "created_at": now,
            "updated_at": now,
            "attempt": 0,
            "epoch": 0,
            "error": None,
            "history": [["claimed", now, "laptop-a:4242:0badcafe"]],
            **fields,
        }
        _s3(self.endpoint).put_object(
            Bucket=self.bucket,
            Key=f"{PREFIX}/{lease_name(key)}",
            Body=json.dumps(data).encode(),
        )


def _machine(base: Path, fake: Any) -> Service:
    root, cache = new_project(base)
    static = FileServer(root / "published")
    static.start()
    env = {
        "MOTIONFLOW_CACHE": str(cache),
        "EMPIRIOLABS_API_KEY": "sk-empiriolabs-TESTKEY-7f3a9c",
        "EMPIRIOLABS_BASE_URL": fake.url,
        "EMPIRIOLABS_POLL_SECONDS": "0.05",
        "EMPIRIOLABS_NOT_FOUND_PATIENCE": "5",
        "EMPIRIOLABS_RATE_LIMIT": "100000",
    }
    return Service(root, cache, fake, static, env)


@pytest.fixture
def team_factory(tmp_path: Path, endpoint: str, bucket: str) -> Iterator[Any]:
    made: list[Service] = []

    def make(**config: Any) -> Team:
        a_root, a_cache = new_project(tmp_path / "a")
        a = make_service(a_root, a_cache, **config)
        b = _machine(tmp_path / "b", a.fake)
        made.extend([a, b])
        a.recipe(OUTFITS)
        b.recipe(OUTFITS)
        remote = f"s3://{bucket}/{PREFIX}?endpoint={endpoint}"
        return Team(a, b, remote, endpoint, bucket)

    yield make
    for service in made:
        service.static.stop()
    if made:
        made[0].fake.stop()


def _finish(proc: Any) -> dict[str, Any]:
    out, err = proc.communicate(timeout=300)
    assert "Traceback" not in err, err
    data: dict[str, Any] = json.loads(out) if out.strip() else {}
    data["_exit"] = proc.returncode
    failures = [f"{f['instance']}: {f['error']}" for f in data.get("failures", [])]
    data["_stderr"] = "\n".join([err, *failures])
    return data


def _videos(machine: Service) -> dict[str, str]:
    out = machine.root / "out"
    return {
        str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*.mp4"))
    }


def _keys(machine: Service) -> list[str]:
    """The generation keys of the recipe, from ``plan --json``."""
    proc = machine.cli("plan", "paid.yaml", "--json", "--cache", str(machine.cache))
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    items = plan.get("instances") or plan.get("items") or []
    keys = [i["key"] for i in items if i.get("stage") == "take" and i.get("key")]
    assert keys, plan
    return sorted(keys)


def _both(team: Team, *args: str, env: dict[str, str] | None = None) -> tuple[Any, Any]:
    """A and B started at the same moment; their JSON summaries."""
    procs = [team.run(team.a, *args, env=env), team.run(team.b, *args, env=env)]
    return _finish(procs[0]), _finish(procs[1])


@pytest.mark.slow
@pytest.mark.parametrize("slow_post", [0.0, 40.0], ids=["fast", "slow-submits"])
def test_two_machines_at_once_pay_once_per_generation(team_factory: Any, slow_post: float) -> None:
    faults = Faults(
        slow_seconds=slow_post, slow_methods=("POST",), slow_paths=("/v1/videos/generations",)
    )
    team = team_factory(faults=faults, processing_seconds=60.0)
    a, b = _both(team)
    assert a["_exit"] == 0, a["_stderr"]
    assert b["_exit"] == 0, b["_stderr"]
    # exactly one accepted submit per generation, whoever won each lease
    prompts = [f"The character wears a {o} and dances." for o in OUTFITS]
    assert team.submits() == dict.fromkeys(prompts, 1)
    assert a["jobs_submitted"] + b["jobs_submitted"] == len(OUTFITS)
    print(f"submits {dict(team.submits())}; A paid {a['jobs_submitted']}, B {b['jobs_submitted']}")
    videos_a, videos_b = _videos(team.a), _videos(team.b)
    assert len(videos_a) == len(OUTFITS)
    assert videos_a == videos_b  # the same bytes on both machines
    leases = team.leases()
    assert sorted(leases) == _keys(team.a) == _keys(team.b)
    assert {lease["state"] for lease in leases.values()} == {"stored"}
    assert all(lease["job_id"] for lease in leases.values())
    # and again, from empty caches: the remote has every result, nobody pays
    for machine in (team.a, team.b):
        shutil.rmtree(machine.cache)
        shutil.rmtree(machine.root / "out")
    a, b = _both(team)
    assert (a["_exit"], b["_exit"]) == (0, 0), a["_stderr"] + b["_stderr"]
    assert team.submits() == dict.fromkeys(prompts, 1)
    assert _videos(team.a) == _videos(team.b) == videos_a


@pytest.mark.slow
def test_a_new_key_race_repeated(team_factory: Any) -> None:
    """Each round is a new generation (a new outfit) both machines start at the same moment."""
    team = team_factory(
        faults=Faults(
            slow_seconds=20.0, slow_methods=("POST",), slow_paths=("/v1/videos/generations",)
        )
    )
    for n in range(4):
        outfits = [f"coat {n}-{i}" for i in range(2)]
        team.a.recipe(outfits)
        team.b.recipe(outfits)
        a, b = _both(team)
        assert a["_exit"] == 0, a["_stderr"]
        assert b["_exit"] == 0, b["_stderr"]
        for outfit in outfits:
            assert team.submits()[f"The character wears a {outfit} and dances."] == 1
        assert _videos(team.a) == _videos(team.b)
    print("submits by prompt:", team.submits())


def _wait_for_leases(team: Team, count: int, state: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        leases = team.leases()
        if len(leases) == count and all(x["state"] == state for x in leases.values()):
            return
        time.sleep(0.2)
    pytest.fail(f"the leases never all became {state}: {team.leases()}")


@pytest.mark.slow
def test_b_started_while_a_job_runs_follows_it(team_factory: Any) -> None:
    team = team_factory(processing_seconds=250.0)  # 5 s per job at the fake's time scale
    first = team.run(team.a)
    _wait_for_leases(team, len(OUTFITS), "submitted")  # A's jobs are running now
    b = _finish(team.run(team.b))
    a = _finish(first)
    assert a["_exit"] == 0, a["_stderr"]
    assert b["_exit"] == 0, b["_stderr"]
    assert sum(team.submits().values()) == len(OUTFITS)  # A's submits, none from B
    assert a["jobs_submitted"] == len(OUTFITS)
    assert b["jobs_submitted"] == 0
    assert b["jobs_resumed"] == len(OUTFITS)
    assert b["estimated_usd"] == 0  # A's spend, not B's: B's summary and budget owe nothing
    assert b["saved_usd"] == a["estimated_usd"]
    assert _videos(team.b) == _videos(team.a)
    assert len(_videos(team.b)) == len(OUTFITS)
    for path in (team.b.cache / "journal").glob("*.json"):
        record = json.loads(path.read_text())
        assert record["redownload"] is True  # not a charge of B's: `spend` counts it once
        notes = [h[0] for h in record["history"]]
        assert any("following" in n and "team's remote" in n for n in notes), notes
    spend = team.b.cli("spend", "--json", "--cache", str(team.b.cache))
    assert spend.returncode == 0, spend.stderr
    assert "0.42" not in spend.stdout  # B's spend: nothing (A paid)


@pytest.mark.slow
def test_a_stale_lease_without_job_id_is_in_doubt_until_the_user_decides(
    team_factory: Any,
) -> None:
    team = team_factory()
    team.b.recipe(["red jacket"])
    (key,) = _keys(team.b)
    team.put_lease(key, state="submitting", idempotency_key="mf-from-the-dead-laptop-0")
    env = {"MOTIONFLOW_LEASE_WAIT": "2"}
    time.sleep(3.5)  # older than the wait, by the store's clock
    b = _finish(team.run(team.b, env=env))
    assert b["_exit"] != 0
    assert sum(team.submits().values()) == 0
    text = b["_stderr"]
    assert "laptop-a:4242:0badcafe" in text
    assert "began" in text
    assert "motionflow jobs adopt" in text
    assert "--resubmit-in-doubt" in text
    assert "may already have been charged" in text
    print(text)
    # the user decides to pay again: once, with the lease's Idempotency-Key
    b = _finish(team.run(team.b, "--resubmit-in-doubt", env=env))
    assert b["_exit"] == 0, b["_stderr"]
    assert sum(team.submits().values()) == 1
    assert team.a.fake.submits_by_key == {"mf-from-the-dead-laptop-0": 1}
    lease = team.leases()[key]
    assert lease["state"] == "stored"
    assert lease["epoch"] == 1
    assert lease["idempotency_key"] == "mf-from-the-dead-laptop-0"
    assert len(_videos(team.b)) == 1


@pytest.mark.slow
def test_a_young_lease_without_job_id_is_waited_for(team_factory: Any) -> None:
    """A holder that claimed and never wrote again (it died before its POST) is taken over
    once stale, with nothing to doubt: a holder says ``submitting`` before every POST."""
    team = team_factory()
    team.b.recipe(["red jacket"])
    (key,) = _keys(team.b)
    team.put_lease(key, state="claimed")
    b = _finish(team.run(team.b, env={"MOTIONFLOW_LEASE_WAIT": "4"}))
    assert b["_exit"] == 0, b["_stderr"]
    assert sum(team.submits().values()) == 1
    lease = team.leases()[key]
    assert lease["epoch"] == 1
    # the lease says when it was claimed and when B took it over: only once it was stale
    claimed = datetime.fromisoformat(lease["history"][0][1])
    (took,) = [h for h in lease["history"] if h[0].startswith("taken over from laptop-a")]
    assert (datetime.fromisoformat(took[1]) - claimed).total_seconds() >= 4 - 1


@pytest.mark.slow
def test_a_failed_lease_is_taken_over_once(team_factory: Any) -> None:
    team = team_factory(faults=Faults(slow_seconds=20.0, slow_methods=("POST",)))
    for machine in (team.a, team.b):
        machine.recipe(["red jacket"])
    (key,) = _keys(team.b)
    team.put_lease(key, state="failed", job_id="job-that-failed", error="upstream failure")
    b = _finish(team.run(team.b, env={"AWS_MAX_ATTEMPTS": "1"}))  # no retries with backoff
    assert b["_exit"] != 0
    assert sum(team.submits().values()) == 0
    assert "--retry-failed" in b["_stderr"]
    assert "job-that-failed" in b["_stderr"]
    assert "laptop-a:4242:0badcafe" in b["_stderr"]
    # both machines retry at once: one takes it over and pays, the other follows
    a, b = _both(team, "--retry-failed")
    assert a["_exit"] == 0, a["_stderr"]
    assert b["_exit"] == 0, b["_stderr"]
    assert sum(team.submits().values()) == 1
    assert team.a.fake.submits_by_key == {f"mf-{key[:40]}-1": 1}  # a new attempt
    assert a["jobs_submitted"] + b["jobs_submitted"] == 1
    assert _videos(team.a) == _videos(team.b)
    lease = team.leases()[key]
    assert (lease["state"], lease["epoch"], lease["attempt"]) == ("stored", 1, 1)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.slow
def test_an_unreachable_remote_submits_nothing(team_factory: Any) -> None:
    team = team_factory()
    team.remote = f"s3://{team.bucket}/{PREFIX}?endpoint=http://127.0.0.1:{_closed_port()}"
    b = _finish(team.run(team.b, env={"AWS_MAX_ATTEMPTS": "1"}))  # no retries with backoff
    assert b["_exit"] != 0
    assert sum(team.submits().values()) == 0
    text = b["_stderr"]
    assert "not submitted, nothing was charged" in text
    assert "lease" in text
    assert "--no-remote" in text
    print(text)
    assert not list((team.b.cache / "journal").glob("*.json"))


@pytest.mark.slow
def test_a_holders_submit_in_doubt_is_in_doubt_on_every_machine(team_factory: Any) -> None:
    team = team_factory(faults=Faults(reset_after_read=1))
    for machine in (team.a, team.b):
        machine.recipe(["red jacket"])
    (key,) = _keys(team.a)
    a = _finish(team.run(team.a))
    assert a["_exit"] != 0  # the POST landed (billed) but its answer was lost
    assert sum(team.submits().values()) == 1
    lease = team.leases()[key]
    assert (lease["state"], lease["job_id"]) == ("in_doubt", None)
    b = _finish(team.run(team.b))
    assert b["_exit"] != 0
    assert sum(team.submits().values()) == 1  # B paid nothing
    assert lease["holder"] in b["_stderr"]
    assert "--resubmit-in-doubt" in b["_stderr"]
    # B's journal has it in doubt too, so the user decides on B as for a local submit
    (row,) = [r for r in _jobs(team.b) if r.get("key", "").startswith(key[:12])]
    assert row["state"] == "in_doubt"
    (job_id,) = team.a.fake.job_ids()  # found on the dashboard
    adopt = team.b.cli("jobs", "--cache", str(team.b.cache), "adopt", key[:12], "--job", job_id)
    assert adopt.returncode == 0, adopt.stderr
    b = _finish(team.run(team.b))
    assert b["_exit"] == 0, b["_stderr"]
    assert sum(team.submits().values()) == 1
    assert len(_videos(team.b)) == 1
    lease = team.leases()[key]
    assert (lease["state"], lease["job_id"], lease["epoch"]) == ("stored", job_id, 0)
    # A, whose own record is in doubt, learns the job from the lease: nothing more is paid
    a = _finish(team.run(team.a))
    assert a["_exit"] == 0, a["_stderr"]
    assert sum(team.submits().values()) == 1
    assert _videos(team.a) == _videos(team.b)


def _jobs(machine: Service) -> list[dict[str, Any]]:
    proc = machine.cli("jobs", "--json", "--cache", str(machine.cache))
    assert proc.returncode == 0, proc.stderr
    rows: list[dict[str, Any]] = json.loads(proc.stdout)
    return rows


@pytest.mark.slow
def test_no_credits_releases_the_lease(team_factory: Any) -> None:
    team = team_factory(faults=Faults(insufficient_credits_after=0))
    for machine in (team.a, team.b):
        machine.recipe(["red jacket"])
    (key,) = _keys(team.a)
    a = _finish(team.run(team.a))
    assert a["_exit"] != 0
    assert sum(team.submits().values()) == 0
    lease = team.leases()[key]
    assert lease["state"] == "released"  # nothing was sent: free for anyone
    team.a.fake.arm(insufficient_credits_after=None)
    b = _finish(team.run(team.b))
    assert b["_exit"] == 0, b["_stderr"]
    assert sum(team.submits().values()) == 1
    assert team.leases()[key]["epoch"] == 1
