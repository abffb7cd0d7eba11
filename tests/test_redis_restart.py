"""Redis restarts under two server processes with subscribers connected.

The servers use a Redis of the test's own (a redis-server on a free port), so that it can
be killed and started again without disturbing anything else; the database is the tests'.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path

import pytest
import redis
from asgiref.sync import sync_to_async

from catalog.models import Source, SourceEvent
from tests.support.http import get
from tests.support.identities import issue_token
from tests.support.polling import poll_until
from tests.support.processes import free_port
from tests.support.services import needs_services, servers
from tests.support.sources import source_values
from tests.support.subscribers import UPDATED, Subscriber, change_scope, until_live
from tests.support.websocket import TRANSPORT_WS, GraphQLWebSocket

pytestmark = [needs_services, pytest.mark.django_db(transaction=True)]

# How soon after Redis is back the subscribers must have every change: the servers check the
# log for lost messages every second here (SUBSCRIPTION_CATCH_UP_SECONDS).
RECOVERY_SECONDS = 10
LIBRARY = "subscription { dataLibrary { sections { key } } }"


@contextmanager
def redis_server(port: int, log: Path) -> Iterator[subprocess.Popen]:
    """Run a throwaway redis-server on `port` until the block ends (or it is stopped)."""
    executable = shutil.which("redis-server")
    assert executable, "redis-server is not installed"
    command = [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    with log.open("a") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    try:
        client = redis.Redis(port=port, socket_connect_timeout=1)

        def answers() -> bool:
            assert process.poll() is None, log.read_text()
            try:
                return client.ping()
            except redis.ConnectionError:
                return False

        poll_until(answers, f"redis-server answering on port {port}", within=10)
        yield process
    finally:
        process.kill()
        process.wait()


@pytest.mark.parametrize("layer", ["core", "pubsub"])
async def test_subscribers_get_every_change_again_once_redis_is_back(layer: str, tmp_path: Path) -> None:
    redis_port = free_port()
    own_redis = {"REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", "REDIS_CHANNEL_LAYER": layer}
    with (
        redis_server(redis_port, tmp_path / "redis.log") as first_redis,
        servers(2, tmp_path, SUBSCRIPTION_CATCH_UP_SECONDS="1", **own_redis) as (subscribed, written),
    ):
        token = await sync_to_async(issue_token)("admin", username="redis-restart")
        source = str((await sync_to_async(Source.objects.create)(**source_values())).pk)
        async with AsyncExitStack() as stack:
            subscribers = [await stack.enter_async_context(Subscriber(a, token)) for a in (subscribed, written)]
            warm_up = await until_live(subscribers, token, written)

            async def change(scope: str) -> None:
                assert await sync_to_async(change_scope)(written, token, source, scope) == UPDATED

            await change("before the restart")
            first_redis.kill()
            first_redis.wait()
            # The database commits; only the announcement is lost. The write still succeeds.
            await change("while Redis is down")
            status, body = await sync_to_async(get)(subscribed, "/readyz")
            assert (status, body["failing"]) == (503, ["channel_layer"])

            with redis_server(redis_port, tmp_path / "redis.log"):
                await change("after the restart")
                expected = await sync_to_async(_scopes_logged)(source)
                assert expected == ["before the restart", "while Redis is down", "after the restart"]
                for subscriber in subscribers:
                    await subscriber.until(
                        lambda events: len([e for e in events if e["sourceId"] == source]) >= 3,
                        "every change, once Redis is back",
                        within=RECOVERY_SECONDS,
                    )
                    received = [
                        e["source"]["scopeOfSubscription"] for e in subscriber.events if e["sourceId"] == source
                    ]
                    assert received == expected, subscriber.address
                assert [e for s in subscribers for e in s.events if e["sourceId"] not in (source, warm_up)] == []
                assert await sync_to_async(get)(subscribed, "/readyz") == (
                    200,
                    {"status": "ready", "failing": [], "checks": {"database": "ok", "channel_layer": "ok"}},
                )
                # The sockets stayed open throughout, and both processes still serve.
                for subscriber in subscribers:
                    subscriber.assert_open()


def _scopes_logged(source: str) -> list[str]:
    events = SourceEvent.objects.filter(source_id=source, kind="UPDATED").order_by("sequence")
    return [event.snapshot["scope_of_subscription"] for event in events]


@pytest.mark.parametrize("layer", ["core", "pubsub"])
@pytest.mark.parametrize("open_meanwhile", [False, True], ids=["idle", "serving"])
async def test_a_socket_opened_right_after_redis_returns_is_acknowledged_within_a_second(
    layer: str, open_meanwhile: bool, tmp_path: Path
) -> None:
    """Right after Redis is back (idle: nothing listened through the outage), sign-in and a first result are prompt."""
    redis_port = free_port()
    own_redis = {"REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", "REDIS_CHANNEL_LAYER": layer}
    with (
        redis_server(redis_port, tmp_path / "redis.log") as first_redis,
        servers(1, tmp_path, **own_redis) as (address,),
    ):
        token = await sync_to_async(issue_token)("admin", username="redis-return")
        async with AsyncExitStack() as stack:
            if open_meanwhile:  # a socket with a live subscription through the outage
                ws = await stack.enter_async_context(GraphQLWebSocket(TRANSPORT_WS, address=address, token=token))
                await ws.next_data(await ws.subscribe(LIBRARY))
            first_redis.kill()
            first_redis.wait()
            with redis_server(redis_port, tmp_path / "redis.log"):
                # The guard on each wait is one second: an answer later than that fails the test.
                async with GraphQLWebSocket(TRANSPORT_WS, address=address, token=token, timeout=1.0) as new:
                    library = await new.next_data(await new.subscribe(LIBRARY))
                    assert [section["key"] for section in library["dataLibrary"]["sections"]] == [
                        "library",
                        "delivery",
                        "update",
                    ]


@pytest.mark.parametrize("layer", ["core", "pubsub"])
async def test_a_socket_opened_while_redis_is_down_is_served_and_hears_changes_once_it_is_back(
    layer: str, tmp_path: Path
) -> None:
    redis_port = free_port()
    own_redis = {"REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", "REDIS_CHANNEL_LAYER": layer}
    with (
        redis_server(redis_port, tmp_path / "redis.log") as first_redis,
        servers(1, tmp_path, SUBSCRIPTION_CATCH_UP_SECONDS="60", **own_redis) as (address,),
    ):
        token = await sync_to_async(issue_token)("admin", username="redis-away")
        source = str((await sync_to_async(Source.objects.create)(**source_values())).pk)
        first_redis.kill()
        first_redis.wait()
        # Each attempt to join a topic is bounded (graph.loops.JOIN_SECONDS): two seconds hold
        # sign-in and the first result, where an unbounded wait never answered.
        async with GraphQLWebSocket(TRANSPORT_WS, address=address, token=token, timeout=2.0) as ws:
            operation = await ws.subscribe(LIBRARY)
            await ws.next_data(operation)
            with redis_server(redis_port, tmp_path / "redis.log"):
                # The feed joins again within seconds and reads the log then, not after the
                # minute-long catch-up period: the change made once it is back reaches the socket.
                await sync_to_async(change_scope)(address, token, source, "after Redis is back")
                ws.timeout = RECOVERY_SECONDS
                assert await ws.next_data(operation) == {
                    "dataLibrary": {"sections": [{"key": "library"}, {"key": "delivery"}, {"key": "update"}]}
                }
