"""The listen backlog of project.serve: LISTEN_BACKLOG, so that a reconnect storm is queued, not refused."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from project.serve import DEFAULT_LISTEN_BACKLOG, kernel_backlog_limit, listen_backlog, with_backlog
from tests.support.processes import ROOT, server_env, serving
from tests.support.sockets import tcp_listeners

SOMAXCONN = kernel_backlog_limit()
needs_linux = pytest.mark.skipif(SOMAXCONN is None, reason="reads the socket from the Linux kernel (sock_diag)")


def ss_backlog(port: int) -> int | None:
    """Return the Send-Q that `ss -ltn` shows for the port (a listener's backlog), or None without ss."""
    ss = shutil.which("ss")
    if ss is None:
        return None
    shown = subprocess.run([ss, "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True)
    lines = shown.stdout.splitlines()
    assert len(lines) == 1, lines
    return int(lines[0].split()[2])


@needs_linux
@pytest.mark.parametrize(("setting", "asked"), [(None, DEFAULT_LISTEN_BACKLOG), ("300", 300)])
def test_the_server_listens_with_the_backlog_of_listen_backlog(tmp_path: Path, setting: str | None, asked: int) -> None:
    env = server_env(DJANGO_DEBUG="1", SQLITE_PATH=str(tmp_path / "db"))
    env.pop("LISTEN_BACKLOG", None)
    if setting is not None:
        env["LISTEN_BACKLOG"] = setting
    with serving(env, tmp_path / "serve.log") as server:
        listeners = tcp_listeners(server.port)
        shown = ss_backlog(server.port)
    # Twisted's default would be 50; the kernel caps what a process asks at net.core.somaxconn.
    expected = min(asked, SOMAXCONN)
    assert [(listener.family, listener.backlog) for listener in listeners] == [(socket.AF_INET, expected)]
    assert shown in (None, expected)
    assert "net.core.somaxconn" not in server.log.read_text()


@needs_linux
def test_a_backlog_over_the_kernels_cap_is_capped_and_the_log_says_so(tmp_path: Path) -> None:
    env = server_env(DJANGO_DEBUG="1", SQLITE_PATH=str(tmp_path / "db"), LISTEN_BACKLOG=str(SOMAXCONN + 1))
    with serving(env, tmp_path / "serve.log") as server:
        listeners = tcp_listeners(server.port)
    assert [listener.backlog for listener in listeners] == [SOMAXCONN]
    assert (
        f"LISTEN_BACKLOG is {SOMAXCONN + 1} but the kernel caps every listen backlog at net.core.somaxconn = "
        f"{SOMAXCONN}: the accept queue holds {SOMAXCONN} connections (raise net.core.somaxconn for more)"
    ) in server.log.read_text()


@pytest.mark.parametrize(
    ("endpoints", "expected"),
    [
        (["tcp:port=8000:interface=127.0.0.1"], ["tcp:port=8000:interface=127.0.0.1:backlog=64"]),
        ([r"tcp:port=8000:interface=\:\:1"], [r"tcp:port=8000:interface=\:\:1:backlog=64"]),
        (["unix:/run/catalog.sock"], ["unix:/run/catalog.sock:backlog=64"]),
        (["ssl:443:privateKey=key.pem"], ["ssl:443:privateKey=key.pem:backlog=64"]),
        # a listening socket handed over (systemd): listening already, with its own backlog
        (["fd:fileno=3"], ["fd:fileno=3"]),
        # an endpoint given with --endpoint that names its own backlog keeps it
        (["tcp:port=8000:backlog=10"], ["tcp:port=8000:backlog=10"]),
    ],
)
def test_every_listening_endpoint_gets_the_backlog(endpoints: list[str], expected: list[str]) -> None:
    assert with_backlog(endpoints, 64) == expected


@pytest.mark.parametrize(("value", "expected"), [(None, 2048), ("", 2048), ("100", 100), (" 4096 ", 4096)])
def test_listen_backlog_defaults_to_2048(value: str | None, expected: int) -> None:
    assert listen_backlog({} if value is None else {"LISTEN_BACKLOG": value}) == expected


@pytest.mark.parametrize("value", ["0", "-5", "many", "2.5"])
def test_a_listen_backlog_that_is_no_positive_whole_number_stops_start_up(value: str) -> None:
    started = subprocess.run(
        [sys.executable, "-m", "project.serve", "-b", "127.0.0.1", "-p", "0", "project.asgi:application"],
        env=server_env(DJANGO_DEBUG="1", LISTEN_BACKLOG=value),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (started.returncode, started.stderr) == (
        1,
        f"LISTEN_BACKLOG must be a whole number of connections, 1 or more, not {value!r}.\n",
    )
