"""Tests that need the real services: PostgreSQL and Redis, shared with server processes they start.

They run in `make test`'s second pass, where the test process itself runs on PostgreSQL and
Redis; the server processes they start use the same test database and Redis, so the test
prepares data with the ORM and reads the log the servers wrote. In the first pass (SQLite
and the in-memory layer, which no second process can share) they are skipped with the reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from tests.support.processes import server_env, serving_several

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
        # One deployment with the test process: the cursors it computes from the log are theirs.
        "DJANGO_SECRET_KEY": settings.SECRET_KEY,
        "DATABASE_URL": database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "REDIS_CHANNEL_LAYER": settings.REDIS_CHANNEL_LAYER,
    }
    return server_env(**(own | env))


@contextmanager
def servers(count: int, logs: Path, **env: str) -> Iterator[list[str]]:
    """Run `count` project.serve processes on the tests' services; yield their host:port addresses.

    Each is ready (/readyz answers 200) before the block starts: the database and Redis answer it.
    """
    log_files = [logs / f"serve-{number}.log" for number in range(count)]
    with serving_several(services_env(**env), log_files, ready=True) as started:
        yield [server.address for server in started]
