"""The service's ASGI application, with every SQL query its process runs counted.

Serve it as `daphne benchmarks.instrumented:application`. It answers `GET /__bench/queries`
itself, before the service sees the request (so the answer costs no query), with
`{"pid": ..., "queries": <count since start>, "statements": {<statement>: <count>}, "websockets":
<WebSocket application instances still running>}`; every other request goes to
`project.asgi.application` unchanged. Counting needs no change to the
service: a wrapper is installed on each database connection as Django opens it.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from django.db.backends.signals import connection_created

from project.asgi import application as service

QUERIES_PATH = "/__bench/queries"
STATEMENT_LENGTH = 200  # enough to tell the statements apart in a breakdown
# Savepoint names hold the thread's id; one name per statement reads better in a breakdown.
_SAVEPOINT_NAME = re.compile(r'"s\d+_x\d+"')

_lock = threading.Lock()  # queries run on several threads (sync_to_async, the ORM's async API)
_statements: Counter[str] = Counter()
_running: Counter[str] = Counter()  # application instances by scope type; event loop thread only


def _count(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
    with _lock:
        _statements[statement_key(sql)] += 1
    return execute(sql, params, many, context)


def statement_key(sql: str) -> str:
    """Return a short name for a statement: its column list left out, where it reads from kept."""
    text = _SAVEPOINT_NAME.sub('"s…"', " ".join(str(sql).split()))
    if text.startswith("SELECT ") and " FROM " in text:
        text = "SELECT … " + text[text.index(" FROM ") + 1 :]  # noqa: S608 (a label, never run)
    return text[:STATEMENT_LENGTH]


def _install(sender: Any, connection: Any, **kwargs: Any) -> None:
    # connection_created fires again when a persistent connection is reopened on the same
    # wrapper object: install once, or every query would count twice from then on.
    if _count not in connection.execute_wrappers:
        connection.execute_wrappers.append(_count)


connection_created.connect(_install, dispatch_uid="benchmarks.instrumented.count_queries")


def snapshot() -> dict[str, Any]:
    with _lock:
        queries = {"queries": sum(_statements.values()), "statements": dict(_statements)}
    return {"pid": os.getpid(), **queries, "websockets": _running["websockets"]}


async def application(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
    if scope["type"] == "http" and scope["path"] == QUERIES_PATH:
        body = json.dumps(snapshot()).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    if scope["type"] != "websocket":
        await service(scope, receive, send)
        return
    # Until the instance returns, its disconnect work (leaving groups) is still going on.
    _running["websockets"] += 1
    try:
        await service(scope, receive, send)
    finally:
        _running["websockets"] -= 1
