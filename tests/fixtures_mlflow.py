"""pytest plugin: a real ``mlflow server`` on 127.0.0.1 (sqlite backend, artifacts in tmp).

Registered with ``pytest_plugins = ["fixtures_mlflow"]`` (tests/ is on sys.path through its
root conftest). The server starts once per test session on the first test that asks for it,
and is stopped (its whole process group, which we started) at the end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from core.net import free_port

STARTUP_TIMEOUT_S = 120


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def start_mlflow_server(root: Path, timeout_s: float = STARTUP_TIMEOUT_S) -> tuple[subprocess.Popen, str]:
    """Start ``mlflow server`` with a sqlite store and proxied artifacts under ``root``; wait for /health.

    Returns:
        The server process (leader of its own process group) and its ``http://`` URL.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    cmd = [
        str(mlflow_bin),
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination",
        str(root / "artifacts"),
    ]
    log_file = open(root / "server.log", "wb")  # noqa: SIM115 - closed with the process
    # No GenAI job runner (it forks ~8 huey workers): the tests need only tracking + artifacts.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    proc.log_file = log_file  # type: ignore[attr-defined]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"mlflow server exited with {proc.returncode}:\n{(root / 'server.log').read_text()[-3000:]}"
            )
        if _healthy(url):
            return proc, url
        time.sleep(0.5)
    stop_mlflow_server(proc)
    raise RuntimeError(f"mlflow server not healthy after {timeout_s} s:\n{(root / 'server.log').read_text()[-3000:]}")


def stop_mlflow_server(proc: subprocess.Popen) -> None:
    """Stop the server's process group (uvicorn workers included): SIGTERM, then SIGKILL after 10 s."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    proc.log_file.close()  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory) -> str:
    """URL of a real MLflow tracking server for this test session."""
    proc, url = start_mlflow_server(tmp_path_factory.mktemp("mlflow_server"))
    yield url
    stop_mlflow_server(proc)
