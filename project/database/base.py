"""Django's PostgreSQL backend (psycopg 3), whose pool replaces connections an outage broke at once.

With OPTIONS["pool"] and CONN_HEALTH_CHECKS, Django gives psycopg_pool a `check` that tries
each connection before handing it out (an empty statement). When the database restarts or the
network drops, every pooled connection breaks at once, but psycopg_pool 3.3 finds that out one
connection per try, and waits between tries (1 s, then longer: its reconnection backoff): a
request after the database returned would spend its whole wait (the pool's `timeout`) on dead
connections and fail, and so would the next ones, until each had been tried. Here the first
broken connection found makes the pool check all the others it holds at once
(ConnectionPool.check(): the broken ones are discarded and replaced), so the request's next try,
after psycopg_pool's one pause, gets a new connection (tests/test_database_outage.py).
"""

from __future__ import annotations

from typing import Any

from django.db.backends.postgresql import base
from psycopg_pool import ConnectionPool


class DatabaseWrapper(base.DatabaseWrapper):
    @property
    def pool(self) -> ConnectionPool | None:
        pool = super().pool
        # Django's check is set when the pool is made (CONN_HEALTH_CHECKS); psycopg_pool keeps
        # it as `_check` and offers no other way to give one besides the constructor, which
        # Django calls.
        if pool is not None and pool._check is ConnectionPool.check_connection:
            pool._check = _CheckingAll(pool)
        return pool


class _CheckingAll:
    """A pool's check: this connection; when it is broken, every other one in the pool too."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    def __call__(self, connection: Any) -> None:
        try:
            ConnectionPool.check_connection(connection)
        except Exception:
            self.pool.check()
            raise
