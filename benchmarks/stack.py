"""What the fan-out benchmark runs against: its own database, its Redis database, daphne processes."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT = 60
USERNAME = "bench"
# Settings of this process that a server must not inherit: it gets its own.
_OWN = {"DATABASE_URL", "REDIS_URL", "REDIS_CHANNEL_LAYER", "DJANGO_SECRET_KEY", "DJANGO_DEBUG"}
_OWN |= {"DJANGO_SETTINGS_MODULE", "ALLOWED_HOSTS", "SECURE_SSL_REDIRECT", "ACCESS_RECHECK_SECONDS"}
_OWN |= {"SQLITE_PATH"}
SERVICE_APPLICATION = "benchmarks.instrumented:application"
CEILING_APPLICATION = "benchmarks.ceiling:application"


def service_env(database_url: str, redis_url: str, layer: str, sqlite_path: str = "") -> dict[str, str]:
    """Return the environment of the servers and management commands: production mode, over HTTP.

    Without `database_url` and `redis_url`: the embedded defaults, SQLite at `sqlite_path` and
    the in-memory channel layer (one process).
    """
    inherited = {key: value for key, value in os.environ.items() if key not in _OWN}
    if not database_url:
        inherited["SQLITE_PATH"] = sqlite_path
    return inherited | {
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "0",  # no TLS on loopback
        **({"DATABASE_URL": database_url} if database_url else {}),
        **({"REDIS_URL": redis_url, "REDIS_CHANNEL_LAYER": layer} if redis_url else {}),
        # Each socket re-checks its token on its own every ACCESS_RECHECK_SECONDS: 1,000
        # sockets would add ~17 queries a second that have nothing to do with the events.
        "ACCESS_RECHECK_SECONDS": "86400",
        # A thousand handshakes arriving together are signed in one after the other.
        "GRAPHQL_CONNECTION_INIT_TIMEOUT": "60",
    }


def _admin_url(database_url: str) -> tuple[str, str]:
    """Return (URL of the maintenance database `postgres`, name of the benchmark's database)."""
    parts = urlsplit(database_url.replace("postgres://", "postgresql://", 1))
    name = parts.path.lstrip("/")
    if not name:
        raise SystemExit(f"The database URL names no database: {database_url}")
    return urlunsplit(parts._replace(path="/postgres")), name


def reset_database(database_url: str) -> None:
    """Drop and create the benchmark's own database."""
    admin, name = _admin_url(database_url)
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as connection:
        connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_database(database_url: str) -> None:
    admin, name = _admin_url(database_url)
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as connection:
        connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def database_version(database_url: str) -> str:
    admin, _ = _admin_url(database_url)
    with psycopg.connect(admin, connect_timeout=5) as connection:
        return connection.execute("SHOW server_version").fetchone()[0]


def flush_redis(redis_url: str) -> None:
    """Empty the benchmark's Redis database: group members left by stopped servers would get messages."""
    redis.Redis.from_url(redis_url).flushdb()


def group_members(redis_url: str) -> int:
    """Return how many channels the core layer's groups hold (the pubsub layer keeps none in keys)."""
    client = redis.Redis.from_url(redis_url)
    # channels-redis names a group's sorted set "<prefix>:group:<name>" (the prefix: CHANNEL_LAYER_PREFIX).
    return sum(client.zcard(key) for key in client.scan_iter(match="*:group:*"))


def redis_version(redis_url: str) -> str:
    return redis.Redis.from_url(redis_url).info("server")["redis_version"]


def redis_cpu_seconds(redis_url: str) -> float:
    info = redis.Redis.from_url(redis_url).info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def manage(env: dict[str, str], *arguments: str) -> str:
    """Run a management command; return what it printed on stdout."""
    done = subprocess.run(  # noqa: S603 (our own manage.py, fixed arguments)
        [sys.executable, "manage.py", *arguments], env=env, cwd=ROOT, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"manage.py {' '.join(arguments)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def prepare_database(env: dict[str, str]) -> str:
    """Migrate, load the demo data, create a superuser; return an API token of that user."""
    manage(env, "migrate", "--noinput")
    manage(env, "load_demo_data")
    password = secrets.token_urlsafe(16)
    user_env = env | {"DJANGO_SUPERUSER_PASSWORD": password}
    manage(user_env, "createsuperuser", "--noinput", "--username", USERNAME, "--email", "bench@example.invalid")
    return manage(env, "create_api_token", USERNAME, "--name", "fanout benchmark").strip()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Server:
    port: int
    process: subprocess.Popen
    log: Path

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def websocket(self) -> str:
        return f"ws://127.0.0.1:{self.port}/graphql"


def get_json(url: str, timeout: float = 10) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (our own loopback server)
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


@contextlib.contextmanager
def servers(
    count: int, env: dict[str, str], log_dir: Path, label: str, application: str = SERVICE_APPLICATION
) -> Iterator[list[Server]]:
    """Run `count` project.serve (daphne) processes serving `application` until the block ends.

    The service's own launcher, so that its listen backlog and shutdown are what is measured.
    """
    started: list[Server] = []
    try:
        for index in range(count):
            port = free_port()
            log = log_dir / f"{label}-server{index + 1}.log"
            command = [
                sys.executable,
                "-m",
                "project.serve",
                "-b",
                "127.0.0.1",
                "-p",
                str(port),
                # daphne closes a WebSocket whose handshake the application has not accepted
                # within 5 s by default; a burst of a thousand can take longer on one process.
                "--websocket_connect_timeout",
                "60",
                application,
            ]
            with log.open("w") as output:
                process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT)  # noqa: S603
            started.append(Server(port=port, process=process, log=log))
        for server in started:
            _wait_until_ready(server)
        yield started
    finally:
        for server in started:
            server.process.terminate()
        for server in started:
            try:
                server.process.wait(timeout=30)  # project.serve drains for up to 10 s
            except subprocess.TimeoutExpired:
                server.process.kill()
                server.process.wait()


def _wait_until_ready(server: Server) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        if server.process.poll() is not None:
            raise SystemExit(f"daphne exited:\n{server.log.read_text()}")
        if time.monotonic() > deadline:
            raise SystemExit(f"daphne did not get ready on port {server.port}:\n{server.log.read_text()}")
        try:
            # /readyz: the database and the channel layer answer, not only the port.
            if get_json(f"{server.http}/readyz", timeout=5)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)  # polling the condition above, with a deadline


def server_queries(server: Server) -> tuple[int, dict[str, int]]:
    """Return how many SQL queries the server process has run, and how many of each statement."""
    status, body = get_json(f"{server.http}/__bench/queries")
    if status != 200:
        raise SystemExit(f"{server.http}/__bench/queries answered {status}: {body}")
    return body["queries"], body["statements"]


def server_websockets(server: Server) -> int:
    """Return how many WebSocket application instances the server process still runs."""
    return get_json(f"{server.http}/__bench/queries")[1]["websockets"]


def machine_busy_seconds() -> float:
    """Return the CPU time all processes of the machine have used since boot (Linux /proc/stat)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    """Return a process's resident memory in KiB (Linux /proc/<pid>/status, VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def process_cpu_seconds(pid: int) -> float:
    """Return the user + system CPU time a process has used (Linux /proc)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rfind(")") + 2 :].split()  # fields from the 3rd on; the name may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# daphne's access log: one line per request and WebSocket, nothing to worry about.
_ACCESS_LOG = re.compile(r'^\S+:\d+ - - \[[^\]]+\] "(WSCONNECTING|WSCONNECT|WSDISCONNECT|GET|POST) ')
_NOTEWORTHY = re.compile(r"Traceback|Error|WARNING|Exception|capacity|Killed|timed out|refused|lost", re.IGNORECASE)
_ROUTINE = (
    "No directory at:",  # WhiteNoise: no collectstatic for a benchmark (the tests ignore it too)
    "Killed 0 pending application instances",  # daphne's clean shutdown
)


def log_findings(log: Path) -> list[str]:
    """Return the lines of a server log that are neither access-log lines nor routine start-up."""
    lines = log.read_text(errors="replace").splitlines()
    return [
        line
        for line in lines
        if not _ACCESS_LOG.match(line) and _NOTEWORTHY.search(line) and not any(r in line for r in _ROUTINE)
    ]
