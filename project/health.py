"""Probes for load balancers: /healthz (the process answers) and /readyz (it can serve)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import psycopg
import redis.asyncio
from asgiref.sync import sync_to_async
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse

logger = logging.getLogger(__name__)

# A probe must answer quickly even when a service drops packets instead of refusing them.
CHECK_TIMEOUT = 3.0


async def healthz(request: HttpRequest) -> JsonResponse:
    """Answer 200 while the process serves requests at all; it touches no other service."""
    return JsonResponse({"status": "ok"})


async def readyz(request: HttpRequest) -> JsonResponse:
    """Answer 200 when the database and the channel layer answer, else 503 naming what does not."""
    results = await asyncio.gather(*(_check(name, check) for name, check in CHECKS.items()))
    checks = dict(zip(CHECKS, results, strict=True))
    failing = [name for name, result in checks.items() if result != "ok"]
    body = {"status": "unavailable" if failing else "ready", "failing": failing, "checks": checks}
    return JsonResponse(body, status=503 if failing else 200)


async def _check(name: str, check: Callable[[], Awaitable[None]]) -> str:
    try:
        await asyncio.wait_for(check(), CHECK_TIMEOUT)
    except TimeoutError:
        return f"no answer within {CHECK_TIMEOUT:g} s"
    except Exception as error:  # any failure means "not ready"; the probe names it
        logger.warning("Readiness check %s failed", name, exc_info=True)
        return f"unreachable ({type(error).__name__})"
    return "ok"


def _select_one() -> None:
    if connection.settings_dict["OPTIONS"].get("pool"):
        # A connection of the probe's own, not the pool's: while the database refuses
        # connections the pool makes a caller wait for its `timeout` (to the probe's deadline,
        # 3 s), where opening one says at once that the database cannot be reached. And
        # readiness asks whether the database answers, not whether the pool has one to spare.
        with psycopg.connect(**connection.get_connection_params()) as own:
            own.execute("SELECT 1")
        return
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        # The probe's thread is not a request's: give the connection back rather than keep it.
        connection.close()


async def _database() -> None:
    await sync_to_async(_select_one, thread_sensitive=False)()


async def _channel_layer() -> None:
    layer = get_channel_layer()
    if layer is None or isinstance(layer, InMemoryChannelLayer):
        return  # in this process's memory: there is nothing to reach
    # Every Redis the layer shards over must answer. Asked over a connection of the probe's
    # own: both channels-redis layers (core and pub/sub) read these hosts, and neither
    # offers one public way to reach its shards.
    for host in settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"]:
        client = redis.asyncio.Redis.from_url(host["address"], socket_timeout=CHECK_TIMEOUT)
        try:
            await client.ping()
        finally:
            await client.aclose()


CHECKS: dict[str, Callable[[], Awaitable[None]]] = {"database": _database, "channel_layer": _channel_layer}
