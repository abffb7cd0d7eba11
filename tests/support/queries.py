"""Count the SQL statements a block of code runs, in every thread.

Django's CaptureQueriesContext sees one connection, the calling thread's; a request served
in-process runs its database work in sync_to_async's threads, each with a connection of its
own. This wraps the one place every Django cursor's statement passes through instead.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from django.db import DEFAULT_DB_ALIAS
from django.db.backends.utils import CursorWrapper


@contextlib.contextmanager
def statements(using: str = DEFAULT_DB_ALIAS) -> Iterator[list[str]]:
    """Yield a list that fills with the SQL of each statement run on `using` inside the block.

    Transaction control that Django does not send as SQL (BEGIN and COMMIT of an outermost
    atomic block go through the driver) is not in it; savepoints are.
    """
    captured: list[str] = []
    lock = threading.Lock()
    original = CursorWrapper._execute_with_wrappers

    def recording(self: CursorWrapper, sql: str, params: Any, many: bool, executor: Any) -> Any:
        if self.db.alias == using:
            with lock:
                captured.append(sql)
        return original(self, sql, params, many, executor)

    CursorWrapper._execute_with_wrappers = recording
    try:
        yield captured
    finally:
        CursorWrapper._execute_with_wrappers = original
