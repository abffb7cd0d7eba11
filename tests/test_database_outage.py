"""PostgreSQL out of reach: a clear `unavailable` error, nothing written, and recovery on its own.

The tests of a real server start project.serve on a database of their own (whatever the test
process's own DATABASE_URL), reached through tests.support.faults.TcpProxy so that they can cut
the way to it and restore it. They need PostgreSQL and are skipped, saying why, when it does not
answer, unless REQUIRE_SERVICES=1. The tests of the error mapping itself run on any database.
"""

from __future__ import annotations

import os
import runpy
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, OperationalError

from accounts.tokens import digest
from catalog import selectors, services
from catalog.errors import database_unreachable
from graph.errors import UNAVAILABLE_MESSAGE
from tests.support.faults import TcpProxy
from tests.support.http import graphql, post_graphql
from tests.support.polling import DEADLINE, apoll_until
from tests.support.processes import ROOT, manage, server_env, serving
from tests.support.websocket import LEGACY_WS, PROTOCOLS, TRANSPORT_WS, Close, GraphQLWebSocket

# The PostgreSQL of `make test`'s second pass; these tests use a database of their own on it.
POSTGRES = urlsplit(os.environ.get("SERVICES_DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/test")
DATABASE = f"outage_test_{os.getpid()}"  # two test runs at once do not share it
CONNECT_TIMEOUT = 2  # the server's DATABASE_CONNECT_TIMEOUT

SOURCES = "{ sources { id country status version } }"
DATA_LIBRARY = "{ dataLibrary { windowDays } }"
ADD = 'mutation { addSource(input: {country: "Spain", dataVendor: "IQVIA", panel: "P", dataType: "D"}) { __typename } }'
UPDATE = 'mutation($id: ID!) { updateSource(id: $id, input: {country: "Italy"}) { __typename } }'
ACTIVATE = "mutation($id: ID!) { activateSource(id: $id) { __typename } }"
DELETE = "mutation($id: ID!) { deleteSource(id: $id) { __typename } }"


def unavailable(document: str | None = None, field: str | None = None) -> dict[str, Any]:
    """Return the error for `field` of a one-line `document` (None: a subscription's stream)."""
    if document is None or field is None:
        return {"message": UNAVAILABLE_MESSAGE, "extensions": {"code": "unavailable"}}
    return {
        "message": UNAVAILABLE_MESSAGE,
        "locations": [{"line": 1, "column": document.index(field) + 1}],
        "path": [field],
        "extensions": {"code": "unavailable"},
    }


# --- The error mapping, on any database


def unreachable_error() -> OperationalError:
    """Return the error Django raises when psycopg cannot connect; its text names the host."""
    text = 'connection failed: connection to server at "10.1.2.3", port 5432 failed: Connection refused'
    error = OperationalError(text)
    error.__cause__ = psycopg.OperationalError(text)
    return error


def wrapped(error: Exception) -> OperationalError:
    django_error = OperationalError(str(error))
    django_error.__cause__ = error
    return django_error


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (unreachable_error(), True),
        (wrapped(psycopg.errors.ConnectionTimeout("connection timeout expired")), True),
        (wrapped(psycopg.OperationalError("consuming input failed: server closed the connection unexpectedly")), True),
        (wrapped(psycopg.errors.AdminShutdown("terminating connection due to administrator command")), True),
        (wrapped(psycopg.errors.TooManyConnections("sorry, too many clients already")), True),
        (psycopg.OperationalError("the connection is closed"), True),
        # A database that answers: a fault to look into, not an outage.
        (wrapped(psycopg.errors.DeadlockDetected("deadlock detected")), False),
        (wrapped(psycopg.errors.QueryCanceled("canceling statement due to statement timeout")), False),
        (wrapped(psycopg.InterfaceError("the cursor is closed")), False),
        (OperationalError("database is locked"), False),  # SQLite's, with no psycopg cause
        (IntegrityError("duplicate key"), False),
        (None, False),
    ],
)
def test_only_errors_that_say_the_database_is_out_of_reach_are_unreachable(error: Any, expected: bool) -> None:
    assert database_unreachable(error) is expected


@pytest.mark.django_db(transaction=True)
async def test_a_query_that_cannot_reach_the_database_is_unavailable_without_details(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def data_library() -> None:
        raise unreachable_error()

    monkeypatch.setattr(selectors, "data_library", data_library)
    assert await graphql(DATA_LIBRARY) == {"data": None, "errors": [unavailable(DATA_LIBRARY, "dataLibrary")]}
    # The host is for the server's log only, on one line, without a traceback.
    assert [(r.levelname, r.getMessage(), r.exc_info) for r in caplog.records if r.name == "graph.errors"] == [
        (
            "WARNING",
            "Database unreachable in ['dataLibrary']: connection failed: connection to server at \"10.1.2.3\", "
            "port 5432 failed: Connection refused",
            None,
        )
    ]


@pytest.mark.django_db(transaction=True)
async def test_a_mutation_that_cannot_reach_the_database_is_unavailable_not_an_operation_info(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def source_create(**fields: Any) -> None:
        raise unreachable_error()

    monkeypatch.setattr(services, "source_create", source_create)
    assert await graphql(ADD) == {"data": None, "errors": [unavailable(ADD, "addSource")]}


def database_settings(monkeypatch: pytest.MonkeyPatch, url: str, timeout: str | None) -> dict[str, Any]:
    monkeypatch.setenv("DATABASE_URL", url)
    if timeout is None:
        monkeypatch.delenv("DATABASE_CONNECT_TIMEOUT", raising=False)
    else:
        monkeypatch.setenv("DATABASE_CONNECT_TIMEOUT", timeout)
    return runpy.run_path(str(ROOT / "project" / "settings.py"))["DATABASES"]["default"]


@pytest.mark.parametrize(
    ("url", "timeout", "expected"),
    [
        ("postgres://catalog@db:5432/catalog", None, 5),
        ("postgres://catalog@db:5432/catalog", "12", 12),
        ("postgres://catalog@db:5432/catalog?connect_timeout=9", "12", 9),  # the URL wins
    ],
)
def test_postgresql_connections_give_up_after_the_connect_timeout(
    monkeypatch: pytest.MonkeyPatch, url: str, timeout: str | None, expected: int
) -> None:
    options = database_settings(monkeypatch, url, timeout)["OPTIONS"]
    # Waiting for a connection from the pool, and trying to replace one, are bounded alike.
    assert options == {
        "connect_timeout": expected,
        "pool": {"min_size": 2, "max_size": 10, "timeout": expected, "reconnect_timeout": expected},
    }


@pytest.mark.parametrize(
    ("size", "pool", "max_age"),
    [
        (None, {"min_size": 2, "max_size": 10}, 0),
        ("25", {"min_size": 2, "max_size": 25}, 0),
        ("1", {"min_size": 1, "max_size": 1}, 0),
        # no pool: a persistent connection per thread, checked when a request starts
        ("0", None, 600),
    ],
)
def test_postgresql_connections_come_from_a_pool_of_database_pool_size(
    monkeypatch: pytest.MonkeyPatch, size: str | None, pool: dict[str, int] | None, max_age: int
) -> None:
    if size is None:
        monkeypatch.delenv("DATABASE_POOL_SIZE", raising=False)
    else:
        monkeypatch.setenv("DATABASE_POOL_SIZE", size)
    database = database_settings(monkeypatch, "postgres://catalog@db:5432/catalog", None)
    options = database["OPTIONS"]
    assert ({k: options["pool"][k] for k in ("min_size", "max_size")} if "pool" in options else None) == pool
    # Django refuses a pool with persistent connections; with one, the health checks are the
    # pool's check of each connection it hands out.
    assert (database["CONN_MAX_AGE"], database["CONN_HEALTH_CHECKS"]) == (max_age, True)
    # the pool's backend: Django's, with broken connections replaced at once (project.database)
    assert database["ENGINE"] == ("project.database" if pool else "django.db.backends.postgresql")


@pytest.mark.parametrize("size", ["-1", "1001", "ten", "2.5"])
def test_a_pool_size_that_is_no_whole_number_from_0_to_1000_stops_start_up(
    monkeypatch: pytest.MonkeyPatch, size: str
) -> None:
    monkeypatch.setenv("DATABASE_POOL_SIZE", size)
    with pytest.raises(ImproperlyConfigured) as refused:
        database_settings(monkeypatch, "postgres://catalog@db:5432/catalog", None)
    assert str(refused.value) == (
        f"DATABASE_POOL_SIZE must be a whole number of connections from 0 (no pool) to 1000, not {size!r}."
    )


@pytest.mark.parametrize("timeout", ["0", "1", "301", "5s", "2.5"])
def test_a_connect_timeout_that_is_no_whole_number_of_seconds_from_2_to_300_stops_start_up(
    monkeypatch: pytest.MonkeyPatch, timeout: str
) -> None:
    with pytest.raises(ImproperlyConfigured) as refused:
        database_settings(monkeypatch, "postgres://catalog@db:5432/catalog", timeout)
    assert str(refused.value) == (
        f"DATABASE_CONNECT_TIMEOUT must be a whole number of seconds from 2 (libpq's minimum) to 300, not {timeout!r}."
    )


# --- A real server, with the way to its database cut and restored


def postgres_url(host_port: str, database: str) -> str:
    userinfo = POSTGRES.netloc.rpartition("@")[0]
    return f"postgresql://{userinfo + '@' if userinfo else ''}{host_port}/{database}"


DIRECT = f"{POSTGRES.hostname}:{POSTGRES.port or 5432}"


@dataclass(frozen=True)
class Server:
    proxy: TcpProxy
    address: str
    token: str
    revocable_token: str  # for the one test that revokes it
    log: Path

    def post(self, document: str, variables: dict[str, Any] | None = None) -> tuple[int, Any]:
        """POST one operation with the admin's token; return the status and the body (JSON if it is)."""
        return post_graphql(self.address, document, variables, token=self.token)

    def socket(self, token: str | None = None) -> GraphQLWebSocket:
        """Return a graphql-transport-ws client of the server, signed in with the admin's token or `token`."""
        return GraphQLWebSocket(TRANSPORT_WS, address=self.address, token=token or self.token, timeout=DEADLINE)

    def add_source(self) -> str:
        document = 'mutation { addSource(input: {country: "France", dataVendor: "IQVIA", panel: "Retail", '
        document += 'dataType: "Sales", status: INACTIVE}) { ... on Source { id } } }'
        status, body = self.post(document)
        assert status == 200, body
        return body["data"]["addSource"]["id"]


async def run(socket: GraphQLWebSocket, document: str, variables: dict[str, Any] | None = None) -> list[Any]:
    """Return the frames of a query or mutation, up to its complete, as (type, payload) pairs."""
    operation = await socket.subscribe(document, variables)
    frames: list[tuple[str, Any]] = []
    while not frames or frames[-1][0] == "next":
        message = await socket.receive()
        assert message["id"] == operation, message
        frames.append((message["type"], message.get("payload")))
    return frames


# Migrate, then print two tokens: one process for all (each start of manage.py takes seconds).
PREPARE = """
from django.core.management import call_command
call_command("migrate", interactive=False, verbosity=0)
from django.contrib.auth import get_user_model
from accounts.tokens import token_create
admin = get_user_model().objects.create_superuser("outage-admin", None, None)
print(token_create(user=admin, name="tests").secret)
print(token_create(user=admin, name="revoked in a test").secret)
"""


def direct(sql: str, *params: Any) -> Any:
    """Run one statement on the test database, around the proxy; return the first value."""
    with psycopg.connect(postgres_url(DIRECT, DATABASE), autocommit=True) as connection:
        cursor = connection.execute(sql, params)
        return cursor.fetchone()[0] if cursor.description else None


@pytest.fixture(scope="module")
def running_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    try:
        admin = psycopg.connect(postgres_url(DIRECT, "postgres"), autocommit=True, connect_timeout=3)
    except psycopg.Error as error:
        reason = f"PostgreSQL is not reachable at {DIRECT}: {' '.join(str(error).split())}"
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail(f"REQUIRE_SERVICES=1: {reason}")
        pytest.skip(reason)
    with admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{DATABASE}"')
        try:
            with TcpProxy(POSTGRES.hostname, POSTGRES.port or 5432) as proxy:
                env = server_env(
                    DATABASE_URL=postgres_url(f"127.0.0.1:{proxy.port}", DATABASE),
                    DJANGO_SECRET_KEY="outage-tests-only-secret-key-0123456789-abcdefghijklmnop",
                    ALLOWED_HOSTS="127.0.0.1",
                    SECURE_SSL_REDIRECT="0",
                    DATABASE_CONNECT_TIMEOUT=str(CONNECT_TIMEOUT),
                    # Often, so that the tests see these checks meet the outage and recover.
                    ACCESS_RECHECK_SECONDS="1",
                    SUBSCRIPTION_CATCH_UP_SECONDS="1",
                )
                tokens = manage(env, "shell", "-c", PREPARE).splitlines()[-2:]
                with serving(env, tmp_path_factory.mktemp("outage") / "serve.log") as started:
                    yield Server(proxy, started.address, token=tokens[0], revocable_token=tokens[1], log=started.log)
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')


@pytest.fixture
def server(running_server: Server) -> Iterator[Server]:
    """The server, its database reachable again after each test, whatever happened in it."""
    running_server.proxy.restore()
    yield running_server
    running_server.proxy.restore()


@pytest.mark.parametrize(("document", "field"), [(SOURCES, "sources"), (DATA_LIBRARY, "dataLibrary")])
async def test_a_query_while_the_database_is_unreachable_is_unavailable(
    server: Server, document: str, field: str
) -> None:
    async with server.socket() as socket:  # signed in while the database answers
        server.proxy.cut()
        assert await run(socket, document) == [
            ("next", {"data": None, "errors": [unavailable(document, field)]}),
            ("complete", None),
        ]


async def test_a_mutation_while_the_database_is_unreachable_is_unavailable_and_writes_nothing(server: Server) -> None:
    source_id = server.add_source()
    before = server.post(SOURCES), direct("SELECT count(*) FROM catalog_sourceevent")
    async with server.socket() as socket:
        server.proxy.cut()
        for document, field in [
            (ADD, "addSource"),
            (UPDATE, "updateSource"),
            (ACTIVATE, "activateSource"),
            (DELETE, "deleteSource"),
        ]:
            assert await run(socket, document, {"id": source_id} if "$id" in document else None) == [
                ("next", {"data": None, "errors": [unavailable(document, field)]}),
                ("complete", None),
            ]
    server.proxy.restore()
    assert (server.post(SOURCES), direct("SELECT count(*) FROM catalog_sourceevent")) == before


async def test_a_bearer_request_while_the_database_is_unreachable_is_unavailable(server: Server) -> None:
    server.proxy.cut()
    assert server.post(SOURCES) == (503, {"errors": [unavailable()]})


async def test_the_service_recovers_by_itself_as_soon_as_the_database_returns(server: Server) -> None:
    listing = server.post(SOURCES)
    assert listing[0] == 200
    async with server.socket() as socket:
        server.proxy.cut()
        assert await run(socket, SOURCES) == [
            ("next", {"data": None, "errors": [unavailable(SOURCES, "sources")]}),
            ("complete", None),
        ]
        assert server.post(SOURCES)[0] != 200  # HTTP meets the outage too (see the bearer test)
        server.proxy.restore()
        # The very next request of each kind succeeds: no restart, no retry.
        assert server.post(SOURCES) == listing
        assert await run(socket, SOURCES) == [("next", listing[1]), ("complete", None)]
    async with server.socket() as fresh:
        assert await run(fresh, SOURCES) == [("next", listing[1]), ("complete", None)]


def at_once(server: Server, how_many: int) -> list[int]:
    """POST `how_many` listings at the same time; return their statuses."""
    with ThreadPoolExecutor(how_many) as threads:
        return [status for status, _ in threads.map(lambda _: server.post(SOURCES), range(how_many))]


def server_connections() -> int:
    """Return how many connections the server holds to its database (this one not counted)."""
    return direct("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", DATABASE)


async def test_the_server_holds_no_more_connections_than_its_pool(server: Server) -> None:
    # 30 requests at once, on a pool of 10 (DATABASE_POOL_SIZE's default): they take turns
    assert at_once(server, 30) == [200] * 30
    assert 2 <= server_connections() <= 10


async def test_pooled_connections_an_outage_broke_are_replaced_not_handed_out(server: Server) -> None:
    # given: the pool holds its ten connections; a quiet outage breaks every one of them
    assert at_once(server, 30) == [200] * 30
    assert server_connections() == 10
    server.proxy.cut()
    server.proxy.restore()

    # when: the database is back, and requests come one after the other, then at once
    started = time.monotonic()
    async with server.socket() as socket:
        listing = await run(socket, SOURCES)
    statuses = [server.post(SOURCES)[0] for _ in range(3)] + at_once(server, 8)

    # then: none is handed a broken connection, and none waits out the pool's timeout
    # (psycopg_pool alone tries one pooled connection per pause of 1 s and more: these would
    # fail for as long as ten broken connections take to try, two at most per request)
    assert [kind for kind, _ in listing] == ["next", "complete"]
    assert "errors" not in listing[0][1]
    assert statuses == [200] * 11
    assert time.monotonic() - started < CONNECT_TIMEOUT


async def test_a_live_subscription_waits_out_the_outage_and_follows_changes_after_it(server: Server) -> None:
    live = "subscription { sources { id } }"
    async with server.socket() as socket:
        first = await socket.subscribe(live)
        await socket.next_payload(first)
        logged = len(server.log.read_text())
        server.proxy.cut()
        # Its regular look at the change log (SUBSCRIPTION_CATCH_UP_SECONDS) meets the outage,
        # and skips it: nothing changed, nothing to send.
        await apoll_until(
            lambda: "Catch-up check skipped: the database is unreachable" in server.log.read_text()[logged:],
            "skipped catch-up check in the log",
        )
        server.proxy.restore()
        source_id = server.add_source()
        payload = await socket.next_payload(first)
        assert source_id in {source["id"] for source in payload["data"]["sources"]}


async def test_an_open_socket_outlives_an_outage_and_checks_its_credentials_again_after_it(server: Server) -> None:
    async with server.socket(server.revocable_token) as socket:
        logged = len(server.log.read_text())
        server.proxy.cut()
        await apoll_until(
            lambda: "Could not check a socket's credentials again" in server.log.read_text()[logged:],
            "failed credential check in the log",
        )
        assert await run(socket, SOURCES) == [
            ("next", {"data": None, "errors": [unavailable(SOURCES, "sources")]}),
            ("complete", None),
        ]
        server.proxy.restore()
        # Revoked behind the service's back (no signal): only its own regular check can notice.
        direct("UPDATE accounts_apitoken SET revoked_at = now() WHERE digest = %s", digest(server.revocable_token))
        assert await socket.closed_with() == Close(4403, "The API token has been revoked.")


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_socket_signing_in_while_the_database_is_unreachable_is_closed_with_4503_saying_why(
    server: Server, protocol: str
) -> None:
    socket = GraphQLWebSocket(protocol, address=server.address, token=None, timeout=DEADLINE)
    await socket.open()
    server.proxy.cut()
    try:
        await socket.send({"type": "connection_init", "payload": {"authorization": f"Bearer {server.token}"}})
        if protocol == LEGACY_WS:  # the legacy protocol's way to say why first
            assert await socket.receive() == {
                "type": "connection_error",
                "payload": {"message": UNAVAILABLE_MESSAGE, "extensions": {"code": "unavailable"}},
            }
        assert await socket.closed_with() == Close(4503, UNAVAILABLE_MESSAGE)  # graphql-ws clients retry it
    finally:
        server.proxy.restore()
        await socket.close()


async def test_a_database_that_drops_packets_is_unavailable_after_the_connect_timeout_not_minutes(
    server: Server,
) -> None:
    async with server.socket() as socket:
        server.proxy.stall()
        started = time.monotonic()
        assert await run(socket, SOURCES) == [
            ("next", {"data": None, "errors": [unavailable(SOURCES, "sources")]}),
            ("complete", None),
        ]
        # Behind at most one other connection attempt of this process (its credential check).
        assert time.monotonic() - started < 3 * CONNECT_TIMEOUT + 2
