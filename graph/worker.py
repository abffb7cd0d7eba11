"""The thread that live results read the database in, apart from the one requests use."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from django.db import OperationalError, close_old_connections, connections

from catalog.errors import database_unreachable

T = TypeVar("T")

# One thread, with its own database connection. sync_to_async would run these reads in the
# thread every sync view and mutation of the process shares (thread_sensitive): a burst of
# reloads for live results would then make writers wait behind it. Here they never do.
_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="live-reads")


async def in_worker(function: Callable[..., T], *args: Any) -> T:
    """Return `function(*args)`, called in the live-reads thread (see _retrying)."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_executor, functools.partial(_retrying, function, *args))


def _retrying(function: Callable[..., T], *args: Any) -> T:
    """Call `function`; once more on a new connection if the thread's connection broke.

    A request starts by dropping a connection that broke; these reads come from changes and
    timers, which do not. So a read that finds its connection broken (the database was
    away) drops it and tries once more on a new one.
    """
    try:
        return function(*args)
    except OperationalError as error:
        if not database_unreachable(error):
            raise
        close_old_connections()
        return function(*args)


def close_worker_connections() -> None:
    """Close the live-reads thread's database connections (before a test database is dropped)."""
    _executor.submit(connections.close_all).result()
