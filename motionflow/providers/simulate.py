"""The ``simulate`` provider: motionflow's own fake EmpirioLabs server on loopback, free.

This is the one production module that imports :mod:`motionflow.fakeapi`: the simulator goes
through the same HTTP client as the paid service (``provider: simulate``), and the CLI's
``fake-server`` command serves the same fake to other programs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import httpx

from motionflow.fakeapi import FakeConfig, FakeEmpirioLabs
from motionflow.providers.empiriolabs import EmpirioLabsClient

__all__ = ["SIMULATED_API_KEY", "SIM_SCALE", "Simulator", "fake_service"]

SIM_SCALE = 0.02
"""The in-process simulator runs at this fraction of real time (its polls too)."""

SIMULATED_API_KEY = "sk-empiriolabs-simulated"
"""The key the simulator's client sends (the simulator accepts any)."""


@contextlib.contextmanager
def fake_service(
    *,
    port: int = 0,
    api_key: str | None = None,
    time_scale: float = 1.0,
    rate_limit_per_minute: int | None = None,
    render: bool = True,
) -> Iterator[str]:
    """Serve the fake EmpirioLabs API on 127.0.0.1 until the block ends; yields its URL.

    Args:
        port: the port to listen on (0: any free port).
        api_key: the only key accepted; None accepts any key (or none).
        time_scale: factor on every delay of the fake (0.01 is 100x faster).
        rate_limit_per_minute: requests allowed per sliding minute (None: unlimited).
        render: write real videos with ffmpeg; False writes tiny placeholder files.

    Raises:
        UsageError: the port cannot be bound (in use, or privileged).
    """
    config = FakeConfig(
        api_key=api_key,
        time_scale=time_scale,
        rate_limit_per_minute=rate_limit_per_minute,
        render=render,
        port=port,
    )
    with FakeEmpirioLabs(config) as server:
        yield server.url


class Simulator:
    """The fake server of one run, started on first use and stopped by :meth:`stop`."""

    def __init__(self) -> None:
        self._fake: FakeEmpirioLabs | None = None

    def __repr__(self) -> str:
        return f"Simulator(running={self._fake is not None})"

    def client(self, http: httpx.AsyncClient) -> EmpirioLabsClient:
        """Start the fake server (free, offline) and return a client talking to it over ``http``."""
        if self._fake is None:
            self._fake = FakeEmpirioLabs(FakeConfig(api_key=None, time_scale=SIM_SCALE))
        url = self._fake.start()
        return EmpirioLabsClient(
            http, api_key=SIMULATED_API_KEY, base_url=url, poll_seconds=5.0 * SIM_SCALE
        )

    def stop(self) -> None:
        """Stop the fake server, if it was started (blocking: call it from a thread)."""
        fake, self._fake = self._fake, None
        if fake is not None:
            fake.stop()
