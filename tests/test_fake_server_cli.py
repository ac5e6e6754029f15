"""``motionflow fake-server`` serves the contract on loopback until interrupted."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

import httpx


def test_fake_server_command_serves_and_stops() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from motionflow.cli import main; main()",
            "fake-server",
            "--no-render",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        headers = {"Authorization": "Bearer sk-empiriolabs-test"}
        model = httpx.get(f"{url}/v1/models/kling-v3-motion-control", headers=headers, timeout=10)
        assert model.status_code == 200 and model.json()["pricing_rows"]
        denied = httpx.get(f"{url}/v1/models/kling-v3-motion-control", timeout=10)
        assert denied.status_code == 401
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "stopped" in err and "Traceback" not in err


def test_fake_server_refuses_a_port_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                "from motionflow.cli import main; main()",
                "fake-server",
                "--no-render",
                "--port",
                str(port),
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,  # the guard: a server that bound elsewhere would serve forever
        )
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""  # no URL: nothing is served
    assert f"cannot listen on 127.0.0.1:{port}: the port is already in use" in proc.stderr
    assert "--port 0" in proc.stderr and "Traceback" not in proc.stderr
