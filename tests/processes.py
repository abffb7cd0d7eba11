"""Real server processes for the tests: start one on a free loopback port, wait until it listens."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT = 60
STOP_TIMEOUT = 30
# Settings of the test process that a started server must not inherit: it gets its own.
_OWN = {"DATABASE_URL", "REDIS_URL", "DJANGO_SECRET_KEY", "DJANGO_DEBUG", "DJANGO_SETTINGS_MODULE"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(**env: str) -> dict[str, str]:
    """Return this environment without the test process's own settings, plus `env`."""
    return {key: value for key, value in os.environ.items() if key not in _OWN} | env


@contextmanager
def listening(command: Sequence[str], port: int, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """Run `command` until the block ends; enter the block once `port` accepts connections."""
    with log.open("w") as output:
        process = subprocess.Popen(list(command), env=env, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:  # the server is up when its port accepts a connection
            assert process.poll() is None, f"{command[0]} exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"no answer on port {port}:\n{log.read_text()}"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)  # polling the condition above, with a deadline
        yield process
    finally:
        process.terminate()  # project.serve drains for up to SHUTDOWN_GRACE_SECONDS (10) first
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise AssertionError(f"{command[0]} ignored SIGTERM for {STOP_TIMEOUT} s:\n{log.read_text()}") from None


@dataclass(frozen=True)
class DemoServer:
    """scripts/serve (as `make run` starts it: demo data, demo / demo) and an API token of demo."""

    address: str  # 127.0.0.1:port
    token: str
    log: Path

    @property
    def origin(self) -> str:
        return f"http://{self.address}"

    def post(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """POST an operation with the token, as an integrator would, and return the body."""
        request = urllib.request.Request(
            f"http://{self.address}/graphql",
            data=json.dumps({"query": query, "variables": variables or {}}).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (our own loopback server)
            return json.load(response)


@contextmanager
def demo_server(folder: Path, token_name: str) -> Iterator[DemoServer]:
    """Run scripts/serve on a free port with a fresh SQLite file in `folder`; issue a token of demo."""
    port = free_port()
    env = server_env(PYTHON=sys.executable, PORT=str(port), SQLITE_PATH=str(folder / "db"))
    log = folder / "serve.log"
    with listening([str(ROOT / "scripts" / "serve")], port, env, log):
        issued = subprocess.run(
            [sys.executable, "manage.py", "create_api_token", "demo", "--name", token_name],
            env=env | {"DJANGO_DEBUG": "1"},
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        yield DemoServer(address=f"127.0.0.1:{port}", token=issued.stdout.strip(), log=log)
