"""Never pay twice, as a model: random runs, kills, faults and untruths against one account.

A Hypothesis state machine (:class:`MoneyModel`) owns one fake EmpirioLabs server, one static
host and one project with its cache per example. Each example draws the account (does the
service honour ``Idempotency-Key``? does it forget a job 1 s after it ends, the client being
told so?), starts with a run of the recipe (two outfits, 3 s, maybe killed), then drives
random steps of what a user and a shared, imperfect account do:

- ``motionflow run``; a run (or ``run --resubmit-in-doubt``) killed with SIGKILL after a
  drawn delay; ``run --resubmit-in-doubt``; ``run --resubmit-lost`` once something is lost;
  ``motionflow jobs collect``;
- before each of those, a drawn set of faults and untruths is armed: late submits, a job
  created then a 5xx, a reset after the request was read, a garbage answer, 404s on polls and
  on downloads, an HTML error page for a video, 5xx on polls, a stranger's job with each of
  our submits or one right now, clock skew of +-8 s, usage pages of two events, another
  spelling of the mode, error bodies that echo the API key;
- editing the recipe: one more outfit, or the other ``--var style``;
- a careful user adopting, for a submit in doubt, the candidate charge whose video really is
  that submit's (``motionflow jobs --json`` candidates, checked against ``fake.charges()``).

After every step it checks:

a. a request (``Idempotency-Key``) is billed at most once, plus once per run in which the user
   paid again for it with ``--resubmit-in-doubt``; exactly once when the key is honoured;
b. every stored result is a job submitted for its key: its charge is ours and carries the
   record's ``Idempotency-Key`` (never a stranger's), and the cache holds that job's video;
c. nothing is ``lost`` while the service still holds it (the fake answers 404 for its id);
d. the ledger (``motionflow spend --json``) brackets what the service billed for our jobs:
   charged <= billed <= charged + in doubt. At teardown, after a clean settle (faults off;
   adopt what is ours; ``run --resubmit-in-doubt --resubmit-lost`` for each var used; ``jobs
   collect``; every record stored), charged equals the bill of the journal's jobs exactly,
   and every charge no record holds is a request the user paid again for (none when the key
   is honoured);
e. the API key is in no file (name or bytes) under the project and the cache, and in no CLI
   output.

And one more, beyond a-e: f. a run that exits 0 and reports nothing pending leaves no job in
flight ("every ``motionflow run`` first collects in-flight jobs of the cache").

Sizes come from MOTIONFLOW_MODEL_EXAMPLES (6) and MOTIONFLOW_MODEL_STEPS (10); the seed is
fixed (``derandomize``). Shrinking is off unless MOTIONFLOW_MODEL_SHRINK=1 (every step is a
process; a shrink takes many minutes); a failure names the steps that led to it.
``benchmarks/soak_money.py`` runs the same machine longer and counts instead of failing.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)
from service import API_KEY, Service, make_service, new_project

from motionflow.cache.journal import JobRecord, Journal
from motionflow.cache.store import Cache
from motionflow.fakeapi.faults import JOB_PATH
from motionflow.providers.collect import retention_deadline

# The recipe starts with two outfits; an edit adds the next one (new paid work for a run).
OUTFITS = [
    "red jacket",
    "white hoodie",
    "blue coat",
    "green scarf",
    "black suit",
    "gold cape",
    "grey vest",
    "pink dress",
]
STYLES = ["plain", "neon"]
TIME_SCALE = 0.02
# What must never appear: the whole key, and its distinctive middle (a partial leak).
SECRETS = (API_KEY, "TESTKEY")
EPS = 0.005  # the ledger rounds to cents

# Faults and untruths a step may arm (a drawn subset of them). Counted faults add up.
COUNTED = {
    "late_submits": 1,
    "created_then_5xx": 1,
    "reset_after_read": 1,
    "lost_response": 1,
    "poll_not_found": 2,
    "file_not_found": 2,
    "file_error_page": 1,
    "server_errors": 2,  # scoped to GET /v1/jobs/{id} in __init__
}
UNTRUTHS: dict[str, Any] = {
    "strangers_per_submit": 1,
    "usage_page_size": 2,
    "usage_mode_words": {"std": "standard"},
    "echo_key_in_errors": True,
}
# skew: +-8 s; a stranger's job: billed to the account just before the step
ARMABLE = sorted([*COUNTED, *UNTRUTHS, "clock_skew+", "clock_skew-", "stranger's job"])
FAULTS = st.sets(st.sampled_from(ARMABLE), max_size=4)

# Retention: "long" never expires in a test; "short" forgets a job 1 s after it ends, and the
# client is told the same (and that a job runs at most 1 s), so a job whose run was killed
# can really be forgotten before the next run comes for it, and be lost.
SHORT_RETENTION = 1.0
SHORT_JOB_TIMEOUT = 1.0


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw else default


def bare(url: str | None) -> str:
    """A URL without its query (the signature)."""
    return (url or "").split("?", 1)[0]


def _serves_video(url: str) -> bool:
    answer = httpx.get(url, timeout=30)
    return answer.status_code == 200 and answer.headers.get("content-type", "").startswith("video")


def write_recipe(svc: Service, outfits: list[str]) -> None:
    """``paid.yaml``: one 3 s generation per outfit, and a ``style`` var in the prompt."""
    text = (
        "version: 1\n"
        "name: paid\n"
        "provider: empiriolabs\n"
        "budget: {max_usd: 50}\n"
        f"publish: {{kind: static, dir: published, base_url: '{svc.static.url}'}}\n"
        "vars: {style: plain}\n"
        f"matrix:\n  outfit: {json.dumps(outfits)}\n"
        "inputs:\n  hero: assets/hero.png\n  dance: assets/dance.mp4\n"
        "stages:\n"
        "  take:\n"
        "    uses: kling.motion_control\n"
        "    with:\n"
        "      image: ${inputs.hero}\n"
        "      video: ${inputs.dance}\n"
        "      prompt: 'The character wears a {{ outfit }} in a {{ style }} style and dances.'\n"
        "      character_orientation: video\n"
        "      duration: 3\n"
        "outputs: [take]\n"
    )
    (svc.root / "paid.yaml").write_text(text, encoding="utf-8")


class ModelInvariantError(AssertionError):
    """An invariant of the money model does not hold."""


class MoneyModel(RuleBasedStateMachine):
    """One fake account, one project, random steps; the invariants after each (see module)."""

    strict: ClassVar[bool] = True
    """Raise on a violation (the test); False only counts them (the soak benchmark)."""
    stats: ClassVar[Counter[str]] = Counter()
    """Figures summed over every example of the process (read by the soak benchmark)."""
    violations: ClassVar[list[str]] = []
    """Every violation seen (while not ``strict``, the machine carries on after one)."""
    errors: ClassVar[list[str]] = []
    """Every other failure of a step (a crash, an unexpected exit code), with its story."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="mf-money-model-"))
        root, cache = new_project(self.tmp)
        # a job takes 0.5 s (queue 10 + processing 15 service seconds): kills land on it
        self.svc = make_service(
            root,
            cache,
            time_scale=TIME_SCALE,
            retention_seconds=1e7,
            queue_seconds=10.0,
            processing_seconds=15.0,
        )
        self.svc.fake.arm(server_error_paths=frozenset({JOB_PATH}))
        self.svc.fake.arm(server_error_methods=frozenset({"GET"}))
        # a 404 on a poll or download is retried this long before the job is left pending
        self.svc.env["EMPIRIOLABS_NOT_FOUND_PATIENCE"] = "2"
        self.outfits = OUTFITS[:2]
        write_recipe(self.svc, self.outfits)
        self.style = STYLES[0]
        self.styles_used = [self.style]
        self.honour = False
        self.short = False
        self.consented: Counter[str] = Counter()  # idempotency key -> pay-again runs
        self.checked_lost: set[str] = set()
        self.checked_blobs: set[tuple[str, str, str]] = set()
        self.broken = False
        self.steps: list[str] = []

    # -- plumbing -----------------------------------------------------------------------------
    @contextmanager
    def step(self, name: str = "") -> Iterator[None]:
        """Note the step (for a failure's story) and whether it raised."""
        if name:
            self.steps.append(name)
        try:
            yield
        except BaseException as exc:
            self.broken = True
            story = " -> ".join(self.steps[-12:])
            type(self).errors.append(f"{type(exc).__name__}: {exc}"[:3000] + f"\n  steps: {story}")
            raise

    def violate(self, message: str) -> None:
        """Record a broken invariant: raise (test) or count it (soak)."""
        story = " -> ".join(self.steps[-12:])
        text = f"{message}\n  steps: {story}"
        type(self).violations.append(text)
        if type(self).strict:
            raise ModelInvariantError(text)

    def cli(self, *args: str) -> tuple[int, str, str]:
        """``motionflow ARGS`` in the project; no traceback; output checked for the key."""
        proc = self.svc.cli(*args)
        self._check_output(" ".join(args), proc.stdout + proc.stderr)
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc.returncode, proc.stdout, proc.stderr

    def run(self, *flags: str) -> int:
        """``motionflow run paid.yaml --var style=... FLAGS --json``: its exit code."""
        code, out, err = self.cli(
            "run", "paid.yaml", "--var", f"style={self.style}", *flags, "--json"
        )
        type(self).stats["runs"] += 1
        assert code in {0, 1}, f"run {flags} exited {code}:\n{out}\n{err}"
        summary = json.loads(out) if out.strip() else {}
        if code == 1:
            type(self).stats["runs failing an instance"] += 1
            if summary.get("jobs_in_doubt"):
                type(self).stats["runs leaving submits in doubt"] += 1
        elif not summary.get("jobs_pending"):
            self._check_nothing_in_flight()
        return code

    def _check_nothing_in_flight(self) -> None:
        """f. after a run that exits 0 and reports nothing pending, no job is in flight."""
        left = [f"{r.label} {r.state}" for r in self.current("submitted", "completed")]
        if not left:
            return
        type(self).stats["quiet runs leaving jobs in flight"] += 1
        self.violate(f"f. a run exited 0, reported nothing pending, and left {left}")

    def records(self, *, archived: bool = False) -> list[JobRecord]:
        return Journal(self.svc.cache).all(archived=archived)

    def current(self, *states: str) -> list[JobRecord]:
        return [r for r in self.records() if r.state in states]

    # -- setup ------------------------------------------------------------------------------
    @initialize(
        honour=st.booleans(),
        short=st.booleans(),
        faults=FAULTS,
        kill=st.none() | st.floats(min_value=0.3, max_value=1.3),
    )
    def start(self, honour: bool, short: bool, faults: set[str], kill: float | None) -> None:
        """The account (does it honour Idempotency-Key? how long does it keep a job?), then a
        first run of the recipe (maybe killed): every example pays for something."""
        with self.step(f"account(honour={honour}, short_retention={short})"):
            self.honour, self.short = honour, short
            self.svc.fake.arm(honour_idempotency_key=honour)
            if short:
                self.svc.fake.arm(retention_seconds=SHORT_RETENTION / TIME_SCALE)
                self.svc.env["EMPIRIOLABS_RETENTION_SECONDS"] = str(SHORT_RETENTION)
                self.svc.env["EMPIRIOLABS_JOB_TIMEOUT"] = str(SHORT_JOB_TIMEOUT)
        if kill is None:
            self.run_normal(faults)
        else:
            self.run_killed(faults, kill)

    # -- what the user does (each after arming a drawn set of faults and untruths) ---------
    @rule(faults=FAULTS)
    def run_normal(self, faults: set[str]) -> None:
        with self.step("run" + self.arm(faults)):
            self.run()

    # A killed run may be one that pays again: killed between archiving the old record and
    # journaling the new submit, the next plain run must still send the new attempt's key
    # (test_a_crash_inside_resubmit_lost_keeps_the_new_attempt).
    @rule(
        faults=FAULTS,
        delay=st.floats(min_value=0.3, max_value=1.3),
        flags=st.sampled_from([(), ("--resubmit-in-doubt",), ("--resubmit-lost",)]),
    )
    def run_killed(self, faults: set[str], delay: float, flags: tuple[str, ...] = ()) -> None:
        name = " ".join(["run", *flags])
        with self.step(f"{name} killed after {delay:.2f}s" + self.arm(faults)):
            before = self.paying_again_for()
            proc = self.svc.popen(
                "run", "paid.yaml", "--var", f"style={self.style}", *flags, "--json"
            )
            time.sleep(delay)
            killed = proc.poll() is None
            if killed:
                proc.kill()  # SIGKILL: no cleanup, no finally blocks
            out, err = proc.communicate(timeout=120)
            self._check_output(f"{name} (killed)", out + err)
            type(self).stats["runs"] += 1
            type(self).stats["kills"] += int(killed)
            if not killed:
                assert "Traceback" not in err, err
                assert proc.returncode in {0, 1}, f"{name} exited {proc.returncode}:\n{err}"
            if flags:
                self.paid_again(before)

    @rule(faults=FAULTS)
    def run_resubmit_in_doubt(self, faults: set[str]) -> None:
        with self.step("run --resubmit-in-doubt" + self.arm(faults)):
            self._paying_again("--resubmit-in-doubt")

    # No preconditions on the journal: it is outside Hypothesis' view, and a replay whose rules
    # depended on it would draw differently. A rule with nothing to do does nothing.
    @rule()
    def run_resubmit_lost(self) -> None:
        if self.current("lost"):
            with self.step("run --resubmit-lost"):
                self._paying_again("--resubmit-lost")

    def _paying_again(self, *flags: str) -> int:
        """A run with pay-again flags; note which requests the user paid for again."""
        before = self.paying_again_for()
        code = self.run(*flags)
        self.paid_again(before)
        return code

    def paying_again_for(self) -> dict[tuple[str, str], JobRecord]:
        """The records a pay-again flag may replace, before the run."""
        return {(r.key, r.started_at): r for r in self.current("in_doubt", "submitting", "lost")}

    def paid_again(self, before: dict[tuple[str, str], JobRecord]) -> None:
        """Consent for each record the run replaced: its request may be billed once more."""
        journal = Journal(self.svc.cache)
        for (key, started), old in before.items():
            now = journal.get(key)
            if now is not None and now.started_at == started:
                continue  # still the same record: not paid again
            if old.state == "lost":  # a new attempt: a new Idempotency-Key
                type(self).stats["paid again (--resubmit-lost)"] += 1
            else:  # the same Idempotency-Key is sent again
                self.consented[old.idempotency_key] += 1
                type(self).stats["paid again (--resubmit-in-doubt)"] += 1

    @rule(faults=FAULTS)
    def jobs_collect(self, faults: set[str]) -> None:
        with self.step("jobs collect" + self.arm(faults)):
            code, _, err = self.cli("jobs", "collect", "--json")
            assert code in {0, 1}, err

    @rule()
    def adopt_what_is_ours(self) -> None:
        """A careful user: looks at each candidate's video and adopts the one that is ours."""
        if self.current("in_doubt"):
            with self.step("jobs adopt (careful)"):
                self._adopt_ours()

    def _adopt_ours(self) -> None:
        code, out, err = self.cli("jobs", "--json")
        assert code == 0, err
        truth = {bare(c["output_url"]): c for c in self.svc.fake.charges() if c["output_url"]}
        journal = Journal(self.svc.cache)
        for row in json.loads(out):
            if row["state"] != "in_doubt" or row["archived"]:
                continue
            record = journal.get(row["key"])
            if record is None or record.state != "in_doubt":
                continue
            for candidate in row.get("candidates", []):
                charges = [truth.get(bare(u)) for u in candidate["output_urls"]]
                if any(
                    c is not None
                    and c["owner"] == "us"
                    and c["idempotency_key"] == record.idempotency_key
                    for c in charges
                ):
                    code, _, err = self.cli(
                        "jobs", "adopt", record.key[:12], "--event", candidate["event_id"]
                    )
                    assert code in {0, 1}, err
                    type(self).stats["adopted (ours)"] += 1
                    break

    # -- what the account does --------------------------------------------------------------
    def arm(self, names: set[str]) -> str:
        """Arm faults (counts add up) and untruths (they stay); a note for the story."""
        if not names:
            return ""
        fake = self.svc.fake
        now = fake.faults
        changes: dict[str, Any] = {}
        for name in names:
            if name in COUNTED:
                changes[name] = int(getattr(now, name)) + COUNTED[name]
            elif name == "stranger's job":
                fake.add_stranger_job()
                type(self).stats["strangers' jobs"] += 1
            elif name.startswith("clock_skew"):
                # the fake scales it by the time scale: this is 8 s of real time
                changes["clock_skew_seconds"] = (-8.0 if name.endswith("-") else 8.0) / TIME_SCALE
            else:
                changes[name] = UNTRUTHS[name]
        fake.arm(**changes)
        type(self).stats["faults armed"] += len(changes)
        return f" [armed {', '.join(sorted(names))}]"

    @rule(what=st.sampled_from(["outfit", "var"]))
    def edit_recipe(self, what: str) -> None:
        """One more outfit (while the pool lasts; then the var), or the other ``--var style``."""
        if what == "outfit" and len(self.outfits) < len(OUTFITS):
            self.outfits = OUTFITS[: len(self.outfits) + 1]
            with self.step(f"edit: add outfit {self.outfits[-1]!r}"):
                write_recipe(self.svc, self.outfits)
            return
        self.style = STYLES[1 - STYLES.index(self.style)]
        with self.step(f"edit: --var style={self.style}"):
            if self.style not in self.styles_used:
                self.styles_used.append(self.style)

    # -- the invariants ---------------------------------------------------------------------
    @invariant()
    def money_is_right(self) -> None:
        with self.step():
            self._check_billed_once()
            self._check_stored_are_ours()
            self._check_lost_are_gone()
            self._check_ledger()
            self._check_files()

    def _check_billed_once(self) -> None:
        """a. one charge per Idempotency-Key, plus one per consented resubmission."""
        for key, billed in self.svc.fake.billed_by_key().items():
            allowed = 1 if self.honour else 1 + self.consented[key]
            if billed > allowed:
                type(self).stats["double charges"] += 1
                self.violate(
                    f"a. {key} billed {billed} times (allowed {allowed}; honoured key: "
                    f"{self.honour}; resubmissions the user asked for: {self.consented[key]})"
                )

    @contextmanager
    def truthful(self) -> Iterator[None]:
        """The fake without the faults that lie about jobs and files, for the checks' own GETs."""
        fake = self.svc.fake
        lies = ("poll_not_found", "server_errors", "file_not_found", "file_error_page")
        held = fake.faults
        fake.arm(**dict.fromkeys(lies, 0))
        try:
            yield
        finally:
            fake.arm(**{name: getattr(held, name) for name in lies})

    def _check_stored_are_ours(self) -> None:
        """b. every stored result is a charge of ours, for the record's own request; the
        bytes in the cache are that job's video."""
        charges = self.svc.fake.charges()
        by_id = {c["job_id"]: c for c in charges}
        by_url = {bare(c["output_url"]): c for c in charges if c["output_url"]}
        current = {(r.key, r.started_at) for r in self.records()}
        for record in self.records(archived=True):
            if record.state != "stored":
                continue
            charge = by_id.get(record.job_id or "")
            if charge is None:
                urls = [by_url.get(bare(u)) for u in record.output_urls]
                charge = next((c for c in urls if c is not None), None)
            if charge is None:
                self.violate(f"b. {record.label} stored job {record.job_id} that nobody billed")
            elif charge["owner"] != "us":
                type(self).stats["adopted strangers"] += 1
                self.violate(f"b. {record.label} stored a stranger's job {charge['job_id']}")
            elif charge["idempotency_key"] != record.idempotency_key:
                self.violate(
                    f"b. {record.label} ({record.idempotency_key}) stored job "
                    f"{charge['job_id']} submitted as {charge['idempotency_key']}"
                )
            elif (record.key, record.started_at) in current:
                self._check_stored_bytes(record, charge)

    def _check_stored_bytes(self, record: JobRecord, charge: dict[str, Any]) -> None:
        seen = (record.key, record.started_at, record.blob or "")
        if seen in self.checked_blobs:
            return
        blob = Cache(self.svc.cache).blob_path(record.blob or "")
        with self.truthful():
            video = httpx.get(charge["output_url"], timeout=30).content
        if not blob.is_file() or blob.read_bytes() != video:
            self.violate(
                f"b. {record.label}: the cache's blob {record.blob} is not the video of job "
                f"{charge['job_id']}"
            )
        self.checked_blobs.add(seen)

    def _check_lost_are_gone(self) -> None:
        """c. a job is lost only when the service really answers 404 for it."""
        lost = [
            r
            for r in self.records(archived=True)
            if r.state == "lost" and r.job_id and r.job_id not in self.checked_lost
        ]
        if not lost:
            return
        fake = self.svc.fake
        with self.truthful():  # no 404 or 5xx fault may answer for the service
            for record in lost:
                answer = httpx.get(
                    f"{fake.url}/v1/jobs/{record.job_id}",
                    headers={"Authorization": f"Bearer {API_KEY}"},
                    timeout=30,
                )
                self.checked_lost.add(record.job_id or "")
                type(self).stats["lost (truly gone)"] += int(answer.status_code == 404)
                served = [u for u in record.output_urls if _serves_video(u)]
                type(self).stats["lost while its video was still served"] += int(bool(served))
                if answer.status_code != 404:
                    type(self).stats["false losses"] += 1
                    self.violate(
                        f"c. {record.label}: job {record.job_id} marked lost "
                        f"({record.error}) but the service answers {answer.status_code}"
                    )

    def _spend(self) -> tuple[float, float]:
        code, out, err = self.cli("spend", "--json")
        assert code == 0, err
        rows = json.loads(out)
        return sum(r["charged_usd"] for r in rows), sum(r["in_doubt_usd"] for r in rows)

    def _ours(self) -> list[dict[str, Any]]:
        return [c for c in self.svc.fake.charges() if c["owner"] == "us"]

    def _check_ledger(self) -> None:
        """d. charged <= what the service billed us <= charged + in doubt."""
        charged, doubt = self._spend()
        billed = sum(c["amount_usd"] for c in self._ours())
        if not charged - EPS <= billed <= charged + doubt + EPS:
            self.violate(
                f"d. the ledger says charged ${charged:.2f} (+ ${doubt:.2f} in doubt) but the "
                f"service billed ${billed:.2f} for our jobs"
            )

    def _check_files(self) -> None:
        """e. the API key is in no file name or file under the project and the cache."""
        for top in (self.svc.root, self.svc.cache):
            for folder, _, names in os.walk(top):
                for name in names:
                    path = Path(folder) / name
                    try:
                        data = path.read_bytes()
                    except OSError:
                        continue  # removed meanwhile (a lock file, a temp file)
                    for secret in SECRETS:
                        if secret in str(path) or secret.encode() in data:
                            type(self).stats["key leaks"] += 1
                            self.violate(f"e. the API key is in {path}")

    def _check_output(self, what: str, text: str) -> None:
        for secret in SECRETS:
            if secret in text:
                type(self).stats["key leaks"] += 1
                self.violate(f"e. the API key is in the output of `motionflow {what}`")

    # -- the end: settle everything, then the exact ledger ------------------------------------
    def teardown(self) -> None:
        try:
            if not self.broken:
                with self.step():
                    self._settle()
        finally:
            self.svc.static.stop()
            self.svc.fake.stop()
            shutil.rmtree(self.tmp, ignore_errors=True)
            type(self).stats["examples"] += 1

    def _settle(self) -> None:
        """Faults off; adopt what is ours, pay again for the rest, collect, until settled."""
        self.steps.append("(settle)")
        fake = self.svc.fake
        fake.arm(**dict.fromkeys(COUNTED, 0), echo_key_in_errors=False)
        time.sleep(fake.faults.late_seconds * TIME_SCALE + 0.2)  # late jobs appear
        if self.current("in_doubt", "submitting"):
            self._adopt_ours()
        for _ in range(3):
            for style in self.styles_used:
                self.style = style
                self._paying_again("--resubmit-in-doubt", "--resubmit-lost")
            code, _, err = self.cli("jobs", "collect", "--json")
            waiting = self.current("submitted", "completed")
            # a job the service forgot is found lost by this collect, after the runs above
            # tried to resume it: the next round's --resubmit-lost pays for it again
            again = self.current("lost", "in_doubt", "submitting")
            if not again and not (self.short and waiting):
                assert code == 0, f"jobs collect after settling: {err}"
                break
            if not (self.short and waiting):
                continue
            # The service may have forgotten them: wait until the client may say so.
            deadline = max(
                retention_deadline(r, retention=SHORT_RETENTION, job_timeout=SHORT_JOB_TIMEOUT)
                for r in waiting
            )
            time.sleep(min(max((deadline - datetime.now(UTC)).total_seconds(), 0) + 0.3, 8))
            self.cli("jobs", "collect", "--json")
        unsettled = [f"{r.label} {r.state}" for r in self.records() if r.state != "stored"]
        assert not unsettled, f"not settled after clean runs of each var: {unsettled}"
        billed_jobs = self.svc.fake.billed_by_key()
        type(self).stats["billed requests"] += sum(billed_jobs.values())
        type(self).stats["billed keys"] += len(billed_jobs)
        self.money_is_right()
        self._check_ledger_exact()

    def _check_ledger_exact(self) -> None:
        """d, settled: charged = the bill of the journal's jobs; the rest was paid again."""
        charged, _ = self._spend()
        records = self.records(archived=True)
        held_ids = {r.job_id for r in records if r.job_id}
        held_urls = {bare(u) for r in records for u in r.output_urls}
        ours = self._ours()
        held = [c for c in ours if c["job_id"] in held_ids or bare(c["output_url"]) in held_urls]
        orphans = [c for c in ours if c not in held]
        held_usd = sum(c["amount_usd"] for c in held)
        if abs(charged - held_usd) > EPS:
            self.violate(
                f"d. settled ledger says ${charged:.2f}; the journal's jobs were billed "
                f"${held_usd:.2f}"
            )
        if self.honour and orphans:
            self.violate(f"d. with an honoured key, charges no record holds: {orphans}")
        unexplained = Counter(c["idempotency_key"] for c in orphans) - self.consented
        if unexplained:
            self.violate(
                f"d. charges no record holds, for requests never paid again: {dict(unexplained)}"
            )
        type(self).stats["paid for twice with consent"] += len(orphans)


def model_settings(examples: int, steps: int, *, shrink: bool) -> settings:
    """Fixed seed, no database, no deadline: every step is a process."""
    phases = [Phase.explicit, Phase.generate] + ([Phase.shrink] if shrink else [])
    return settings(
        max_examples=examples,
        stateful_step_count=steps,
        derandomize=True,
        database=None,
        deadline=None,
        phases=phases,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        report_multiple_bugs=False,
    )


TestMoneyModel = MoneyModel.TestCase
TestMoneyModel.settings = model_settings(
    _env_int("MOTIONFLOW_MODEL_EXAMPLES", 6),
    _env_int("MOTIONFLOW_MODEL_STEPS", 10),
    shrink=os.environ.get("MOTIONFLOW_MODEL_SHRINK", "") == "1",
)
TestMoneyModel.pytestmark = [pytest.mark.slow]  # every step is a process: the suite's longest


# -- two product bugs the model found (fixed in f4de0d8), each by its smallest reproduction -----
# The model's rig: jobs take 0.5 s, so a run can be killed while one is in flight.
SLOW_JOBS = pytest.mark.fake(queue_seconds=10.0, processing_seconds=15.0)


def _kill_once_submitted(svc: Service, *args: str) -> None:
    """Start ``motionflow run paid.yaml ARGS`` and SIGKILL it once a job id is journaled."""
    journal = Journal(svc.cache)
    before = {r.key for r in journal.all() if r.state == "submitted"}
    proc = svc.popen("run", "paid.yaml", *args, "--json")
    deadline = time.monotonic() + 30
    while not {r.key for r in journal.all() if r.state == "submitted"} - before:
        assert proc.poll() is None and time.monotonic() < deadline, "no job was submitted"
        time.sleep(0.005)
    proc.kill()
    proc.communicate(timeout=60)


@SLOW_JOBS
@pytest.mark.slow
def test_a_run_with_nothing_to_do_still_collects_jobs_in_flight(service: Service) -> None:
    svc = service
    write_recipe(svc, OUTFITS[:1])
    assert svc.run_json("--var", "style=plain")["_exit"] == 0  # clean: the stamp is written
    _kill_once_submitted(svc, "--var", "style=neon")  # a paid job of the other var in flight
    again = svc.run_json("--var", "style=plain")
    assert again["_exit"] == 0, again["_stderr"]
    # "every `motionflow run` first collects in-flight jobs of the cache", or says it could not
    assert again["jobs_collected"] == 1 or again["jobs_pending"], again
    assert [r.state for r in Journal(svc.cache).all()] == ["stored", "stored"]


@SLOW_JOBS
@pytest.mark.slow
def test_a_crash_inside_resubmit_lost_keeps_the_new_attempt(service: Service) -> None:
    svc = service
    svc.fake.arm(honour_idempotency_key=True)
    # the client may call a job lost 1 s after it was submitted (job timeout 1 s, retention 0)
    svc.env.update(EMPIRIOLABS_RETENTION_SECONDS="0", EMPIRIOLABS_JOB_TIMEOUT="1")
    write_recipe(svc, OUTFITS[:1])
    _kill_once_submitted(svc)
    svc.fake.wait_for_workers()
    svc.fake.advance(1e6)  # the service forgets the job
    time.sleep(1.5)
    assert svc.run_json()["_exit"] == 1
    journal = Journal(svc.cache)
    (lost,) = journal.all()
    assert lost.state == "lost"
    # `run --resubmit-lost`, SIGKILLed right after `_resumable` archived the lost record and
    # before `_post` journaled the new `submitting` one (publishing the inputs runs between):
    journal.archive(lost, "resubmitted after the result was lost")
    svc.run_json()
    (again,) = journal.all()
    assert again.attempt == lost.attempt + 1  # the attempt the user paid for ...
    assert again.idempotency_key != lost.idempotency_key  # ... with its own key ...
    assert again.job_id != lost.job_id  # ... so the service makes a new video
