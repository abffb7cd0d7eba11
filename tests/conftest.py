"""Fixtures shared by the tests; the helpers they use live in tests/support."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import SyncToAsync
from django.db import connections

from graph.worker import close_worker_connections


@pytest.fixture(autouse=True, scope="session")
def _close_worker_thread_connections(django_db_setup: None, django_db_blocker: Any) -> Any:
    """Close the connection that sync_to_async's worker thread keeps, before the test database goes.

    With persistent connections (DATABASE_URL) it would otherwise block dropping the database.
    """
    yield
    with django_db_blocker.unblock():
        SyncToAsync.single_thread_executor.submit(connections.close_all).result()
        close_worker_connections()
