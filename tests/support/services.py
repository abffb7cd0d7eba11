"""Tests that need the real services: PostgreSQL and Redis, shared with server processes they start.

They run in `make test`'s second pass, where the test process itself runs on PostgreSQL and
Redis; the server processes they start use the same test database and Redis, so the test
prepares data with the ORM and reads the log the servers wrote. In the first pass (SQLite
and the in-memory layer, which no second process can share) they are skipped with the reason.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from tests.processes import free_port, listening, server_env

needs_services = pytest.mark.skipif(
    not (settings.DATABASE_URL and settings.REDIS_URL),
    reason="needs PostgreSQL and Redis, which several processes share: runs in make test's second "
    "pass (DATABASE_URL and REDIS_URL set)",
)


def database_url() -> str:
    """Return the URL of the database the tests run on (pytest-django's test database)."""
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def services_env(**env: str) -> dict[str, str]:
    """Return the environment of a server process on the tests' database and Redis, plus `env`."""
    own = {
        "DJANGO_DEBUG": "1",
        "DATABASE_URL": database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "REDIS_CHANNEL_LAYER": settings.REDIS_CHANNEL_LAYER,
    }
    return server_env(**(own | env))


def daphne(port: int) -> list[str]:
    return [sys.executable, "-m", "project.serve", "-b", "127.0.0.1", "-p", str(port), "project.asgi:application"]


@contextmanager
def servers(count: int, logs: Path, **env: str) -> Iterator[list[str]]:
    """Run `count` daphne processes on the tests' services; yield their host:port addresses."""
    with ExitStack() as stack:
        addresses = []
        for number in range(count):
            port = free_port()
            stack.enter_context(listening(daphne(port), port, services_env(**env), logs / f"daphne-{number}.log"))
            addresses.append(f"127.0.0.1:{port}")
        yield addresses
