"""EmpirioLabs client throughput: many jobs through one client under the server's rate limit.

Prints figures; it does not pass or fail. Targets (issue #4, 2-core machine), for 100 jobs
against the fake server at a compressed time scale, the rate limit enforced by the server:
  - requests per job (a perfect client needs 2: one submit, one poll once the job is done)
  - 429 answers received: 0
  - makespan within 1.25x of the best possible under the rate limit

Time. The fake server multiplies every delay by ``--scale`` S, its 60 s rate-limit window
included. The client is compressed the same way: its clock (the RateLimiter's and the job
timeout's) reads ``monotonic() / S``, its sleeps (limiter waits, poll intervals, backoff)
last S times what it asks for, and the server's ``Retry-After`` (real seconds) is divided by
S on the way in. So the client, its RateLimiter and the server agree on a "virtual" second
that lasts S real seconds; every figure is in virtual seconds (wall / S). What does not
compress is CPU time: a request costs the same milliseconds at any S, so the smaller S, the
larger the request latency in virtual seconds (the script prints it).

The best possible makespan. Let N be the jobs, L the limit per W = 60 s window, D the time
a job takes at the server (queue + processing). Every job needs at least one submit and at
least one poll no earlier than D after its submit, and at most L requests fit in any window
of length W, so the i-th request (counting from 0) cannot leave before floor(i / L) * W:
  - the last of the 2N requests cannot leave before floor((2N - 1) / L) * W;
  - the last of the N submits cannot leave before floor((N - 1) / L) * W, and its job is
    not done, so cannot be seen done, until D later.
So  best = max(floor((2N - 1) / L) * W,  floor((N - 1) / L) * W + D).
For N = 100, L = 50, D = 30 + 120 s this is max(180, 60 + 150) = 210 s, and it can be
reached: submit 50 jobs at 0 s and 50 at 60 s, poll the first 50 at 150 s and the others at
210 s (4 bursts of 50, each 60 s or more apart, so no window holds more than 50). The
bound ignores request latency.

Usage: python benchmarks/api_throughput.py [--jobs 100] [--scale 0.02] [--repeat 1]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from multiprocessing.connection import Connection

import httpx

from motionflow.fakeapi import FakeConfig, FakeEmpirioLabs
from motionflow.fakeapi.handler import UNKNOWN_PATH
from motionflow.providers.empiriolabs import EmpirioLabsClient, SubmitRequest
from motionflow.providers.ratelimit import RateLimiter

KEY = "sk-empiriolabs-bench"
WINDOW = 60.0  # the rate-limit window, in (virtual) seconds
BODY = SubmitRequest(
    model="kling-v3-motion-control",
    prompt="A dancer spins on a neon rooftop at night.",
    reference_image="https://cdn.example/hero.png",
    reference_video="https://cdn.example/dance.mp4",
    duration=5,
)


@dataclass(frozen=True)
class Figures:
    """What one run measured (times in virtual seconds)."""

    requests: dict[str, int]
    per_job: float
    rate_limited: int
    makespan: float
    succeeded: int
    errors: dict[str, int]
    duplicate_submits: int
    latency_median: float
    latency_max: float
    wall: float


def best_makespan(jobs: int, limit: int, job_seconds: float) -> float:
    """The least makespan any client could reach (see the module docstring)."""
    by_count = ((2 * jobs - 1) // limit) * WINDOW
    by_last_submit = ((jobs - 1) // limit) * WINDOW + job_seconds
    return max(by_count, by_last_submit)


class _VirtualTime(httpx.AsyncBaseTransport):
    """Turn the server's ``Retry-After`` into virtual seconds; time every request."""

    def __init__(self, inner: httpx.AsyncBaseTransport, scale: float) -> None:
        self._inner = inner
        self._scale = scale
        self.latencies: list[float] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        start = time.monotonic()
        response = await self._inner.handle_async_request(request)
        self.latencies.append((time.monotonic() - start) / self._scale)
        after = response.headers.get("Retry-After")
        if after is not None:
            response.headers["Retry-After"] = f"{float(after) / self._scale:.3f}"
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


@dataclass(frozen=True)
class _ClientSide:
    makespan: float
    succeeded: int
    errors: dict[str, int]
    latencies: list[float]


async def _drive(args: argparse.Namespace, url: str) -> _ClientSide:
    """Submit and wait for every job at once, through one client and one limiter."""
    scale: float = args.scale

    def clock() -> float:
        return time.monotonic() / scale

    async def sleep(seconds: float) -> None:
        await asyncio.sleep(seconds * scale)

    limiter = RateLimiter(args.client_limit, clock=clock, sleep=sleep)
    # The fake server listens with a backlog of 5: more connections opened at once are
    # dropped and retried a second later (SYN retransmission), so the pool stays small.
    limits = httpx.Limits(max_connections=args.connections)
    transport = _VirtualTime(httpx.AsyncHTTPTransport(limits=limits), scale)
    async with httpx.AsyncClient(timeout=30.0, transport=transport, trust_env=False) as http:
        client = EmpirioLabsClient(
            http,
            api_key=KEY,
            base_url=url,
            limiter=limiter,
            sleep=sleep,
            clock=clock,
            poll_seconds=args.poll_seconds,
        )

        async def one() -> bool:
            submitted = await client.submit(BODY, idempotency_key=uuid.uuid4().hex)
            job = await client.wait(
                submitted.job_id, timeout=args.job_timeout, poll_url=submitted.poll_url
            )
            return job.state == "succeeded"

        # Open the pool's connections first, as a long-running client has them: a path the
        # server does not know is answered before the key and rate checks (not counted below).
        await asyncio.gather(*(http.get(f"{url}/warm-up") for _ in range(args.connections)))
        transport.latencies.clear()
        start = time.monotonic()
        results = await asyncio.gather(*(one() for _ in range(args.jobs)), return_exceptions=True)
        makespan = (time.monotonic() - start) / scale
    errors = Counter(type(r).__name__ for r in results if isinstance(r, BaseException))
    return _ClientSide(
        makespan=makespan,
        succeeded=sum(r is True for r in results),
        errors=dict(errors),
        latencies=transport.latencies,
    )


def _serve(config: FakeConfig, conn: Connection) -> None:
    """In a child process: serve until told to stop, then send back the counters."""
    with FakeEmpirioLabs(config) as fake:
        conn.send(fake.url)
        conn.recv()
        fake.wait_for_workers()
        conn.send((dict(fake.requests), fake.rate_limited, dict(fake.submits_by_key)))


def run_once(args: argparse.Namespace) -> Figures:
    """Start a fake server, run every job through one client, and read its counters."""
    config = FakeConfig(
        api_key=KEY,
        time_scale=args.scale,
        queue_seconds=args.queue,
        processing_seconds=args.processing,
        rate_limit_per_minute=args.server_limit,
        fetch_references=False,
        render=False,
    )
    # The server gets a process of its own: sharing the GIL with the client doubles the
    # latency of every request, and a compressed time scale magnifies latency.
    ours, theirs = multiprocessing.Pipe()
    spawn = multiprocessing.get_context("spawn")
    server = spawn.Process(target=_serve, args=(config, theirs), daemon=True)
    wall = time.perf_counter()
    server.start()
    theirs.close()  # a server that dies makes recv() raise instead of hang
    finished = False
    try:
        url: str = ours.recv()
        side = asyncio.run(_drive(args, url))
        ours.send("stop")
        seen: dict[tuple[str, str], int]
        rate_limited: int
        by_key: dict[str, int]
        seen, rate_limited, by_key = ours.recv()
        finished = True
    finally:
        server.join(timeout=30 if finished else 0)
        if server.is_alive():
            server.kill()
            server.join()
    wall = time.perf_counter() - wall
    routes = {
        f"{method} {path}": n
        for (method, path), n in sorted(seen.items())
        if path != UNKNOWN_PATH  # the warm-up
    }
    latencies = sorted(side.latencies) or [0.0]
    return Figures(
        requests=routes,
        per_job=sum(routes.values()) / args.jobs,
        rate_limited=rate_limited,
        makespan=side.makespan,
        succeeded=side.succeeded,
        errors=side.errors,
        duplicate_submits=sum(n - 1 for n in by_key.values() if n > 1),
        latency_median=statistics.median(latencies),
        latency_max=latencies[-1],
        wall=wall,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--scale", type=float, default=0.02, help="real seconds per second")
    parser.add_argument("--queue", type=float, default=30.0, help="seconds a job is queued")
    parser.add_argument("--processing", type=float, default=120.0, help="seconds it runs")
    parser.add_argument("--server-limit", type=int, default=50, help="requests per minute")
    parser.add_argument("--client-limit", type=int, default=50, help="the client's limiter")
    parser.add_argument("--poll-seconds", type=float, default=5.0, help="first poll interval")
    parser.add_argument("--job-timeout", type=float, default=3600.0)
    parser.add_argument("--connections", type=int, default=5, help="HTTP connections")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    if args.jobs < 1 or args.repeat < 1 or args.connections < 1 or not args.scale > 0:
        parser.error("--jobs, --repeat and --connections must be at least 1, --scale positive")

    best = best_makespan(args.jobs, args.server_limit, args.queue + args.processing)
    print(
        f"EmpirioLabs client throughput: {args.jobs} jobs at once through one client; "
        f"queue {args.queue:g} s + processing {args.processing:g} s a job; server limit "
        f"{args.server_limit}/min, client limiter {args.client_limit}/min; first poll "
        f"{args.poll_seconds:g} s; time scale {args.scale:g} (a minute lasts "
        f"{WINDOW * args.scale:g} s); {args.connections} connections; {args.repeat} run(s)"
    )
    print("  (times in virtual seconds = wall / scale)")
    runs: list[Figures] = []
    for number in range(1, args.repeat + 1):
        figures = run_once(args)
        runs.append(figures)
        routes = ", ".join(f"{route} {n}" for route, n in figures.requests.items())
        failed = ", ".join(f"{name} {n}" for name, n in figures.errors.items()) or "none"
        print(
            f"  run {number}: {figures.per_job:.2f} requests/job ({routes}); "
            f"429s {figures.rate_limited}; makespan {figures.makespan:.0f} s = "
            f"{figures.makespan / best:.2f}x best; succeeded {figures.succeeded}/{args.jobs}, "
            f"failed: {failed}; paid twice {figures.duplicate_submits}; request latency "
            f"median {figures.latency_median:.2f} s, max {figures.latency_max:.2f} s; "
            f"wall {figures.wall:.1f} s"
        )

    per_job = statistics.median(r.per_job for r in runs)
    limited = statistics.median(r.rate_limited for r in runs)
    makespan = statistics.median(r.makespan for r in runs)
    print(f"  best possible makespan under the limit: {best:.0f} s (2 requests a job)")
    print(f"  requests per job:  {per_job:6.2f}   (lower bound 2.00; median of runs)")
    print(
        f"  429s received:     {limited:6g}   (target 0; median of runs, "
        f"max {max(r.rate_limited for r in runs)})"
    )
    print(
        f"  makespan:          {makespan:6.0f} s = {makespan / best:.2f}x best"
        f"   (target <= 1.25x; median of runs)"
    )
    if any(r.succeeded != args.jobs for r in runs):
        print("  some jobs failed (see 'failed' above): the client gave up on them")


if __name__ == "__main__":
    main()
