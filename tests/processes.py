"""Real server processes for the tests: start one on a free loopback port, wait until it listens."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

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
