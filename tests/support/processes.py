"""Server processes for the tests: start them on free loopback ports, wait until they answer, stop them.

Every server a test starts is `python -m project.serve` (daphne with the graceful shutdown) or
`scripts/serve` (the same, after migrate and the demo data, as `make run` starts it), so that a
test stops it as a process manager would, with SIGTERM, and sees it exit 0 in time.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.http import get
from tests.support.polling import poll_until

ROOT = Path(__file__).resolve().parents[2]
PROJECT_SERVE = "project.serve"
SCRIPTS_SERVE = "scripts/serve"
STARTUP_TIMEOUT = 60
# project.serve drains for up to SHUTDOWN_GRACE_SECONDS (10 by default) before it exits.
STOP_TIMEOUT = 30
# Settings of the test process that a started server must not inherit: it gets its own.
_OWN = {"DATABASE_URL", "REDIS_URL", "DJANGO_SECRET_KEY", "DJANGO_DEBUG", "DJANGO_SETTINGS_MODULE"}


def free_port() -> int:
    """Return a loopback port that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(**env: str) -> dict[str, str]:
    """Return this environment without the test process's own settings, plus `env`."""
    return {key: value for key, value in os.environ.items() if key not in _OWN} | env


def manage(env: Mapping[str, str], *arguments: str) -> str:
    """Run a management command with `env`; return what it printed on stdout, stripped."""
    done = subprocess.run(
        [sys.executable, "manage.py", *arguments], env=env, cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"manage.py {' '.join(arguments)} failed:\n{done.stdout}{done.stderr}"
    return done.stdout.strip()


@dataclass(frozen=True)
class Server:
    """A server process the tests started: its process, port and log."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def origin(self) -> str:
        return f"http://{self.address}"

    def answers(self, *, ready: bool = False) -> bool:
        """Return whether /healthz answers 200 (with `ready`: whether /readyz does, too).

        Fail at once, with the log, when the process has exited.
        """
        assert self.process.poll() is None, f"the server on port {self.port} exited:\n{self.log.read_text()}"
        # An answer, not only an open port: the port listens before the reactor runs, and
        # project.serve installs its SIGTERM handler only once it runs.
        try:
            return get(self.address, "/healthz")[0] == 200 and (not ready or get(self.address, "/readyz")[0] == 200)
        except OSError:  # nothing listens yet
            return False


@contextmanager
def serving(
    env: Mapping[str, str],
    log: Path,
    *,
    program: str = PROJECT_SERVE,
    ready: bool = False,
    options: Sequence[str] = (),
) -> Iterator[Server]:
    """Run one server with `env` until the block ends; enter the block once it answers.

    It answers when /healthz says 200. `program`: PROJECT_SERVE or SCRIPTS_SERVE. `ready`: wait
    for /readyz to say 200 too (the database and the channel layer answer). `options`: more of
    daphne's options, for PROJECT_SERVE.
    """
    with serving_several(env, [log], program=program, ready=ready, options=options) as (server,):
        yield server


@contextmanager
def serving_several(
    env: Mapping[str, str],
    logs: Sequence[Path],
    *,
    program: str = PROJECT_SERVE,
    ready: bool = False,
    options: Sequence[str] = (),
) -> Iterator[list[Server]]:
    """Run one server per log file, all with `env`, until the block ends; enter once every one answers.

    They start together and stop together, each taking its seconds to start and to drain at the
    same time as the others.
    """
    servers = []
    try:
        for log in logs:
            servers.append(_start(program, dict(env), log, options))
        poll_until(
            lambda: all(server.answers(ready=ready) for server in servers),
            f"{program} answering on ports {[server.port for server in servers]}",
            within=STARTUP_TIMEOUT,
            interval=0.1,
        )
        yield servers
    finally:
        exits = _stop(servers)
    # Here only when the block went well: its own failure says more than how the processes ended.
    for server, code in zip(servers, exits, strict=True):
        assert code is not None, f"{program} ignored SIGTERM for {STOP_TIMEOUT} s:\n{server.log.read_text()}"
        assert code == 0, f"{program} exited with {code} on SIGTERM:\n{server.log.read_text()}"


def _start(program: str, env: dict[str, str], log: Path, options: Sequence[str] = ()) -> Server:
    port = free_port()
    if program == SCRIPTS_SERVE:
        command = [str(ROOT / SCRIPTS_SERVE)]
        env |= {"PYTHON": sys.executable, "PORT": str(port)}
    else:
        assert program == PROJECT_SERVE, program
        command = [sys.executable, "-m", PROJECT_SERVE, "-b", "127.0.0.1", "-p", str(port), *options]
        command.append("project.asgi:application")
    with log.open("w") as output:
        process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT)
    return Server(process=process, port=port, log=log)


def _stop(servers: Sequence[Server]) -> list[int | None]:
    """Send each server SIGTERM, then wait for them all; return their exit codes (None: killed)."""
    for server in servers:
        server.process.send_signal(signal.SIGTERM)
    exits: list[int | None] = []
    for server in servers:
        try:
            exits.append(server.process.wait(timeout=STOP_TIMEOUT))
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
            exits.append(None)
    return exits
