"""sourceEvents(after:): every logged change after a cursor, then live, with no gap and nothing twice.

A cursor this log never issued is refused with `cursor_unknown`, over both subprotocols.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from catalog import cursors, selectors, services
from catalog.models import SourceEvent, last_sequence
from graph import execution
from tests.support.listening import until_listening
from tests.support.sources import source_values
from tests.support.websocket import PROTOCOLS, TRANSPORT_WS, GraphQLWebSocket

pytestmark = pytest.mark.django_db(transaction=True)

EVENTS = "subscription Events($after: String) { sourceEvents(after: $after) { cursor kind source { country } } }"
FILTERED = (
    "subscription Created($after: String) { sourceEvents(after: $after, kinds: [CREATED]) { cursor kind source "
    "{ country } } }"
)


def create(country: str) -> uuid.UUID:
    return services.source_create(actor=None, **source_values(country=country)).pk


async def make_changes(*countries: str) -> list[tuple[str, str]]:
    """Create a source per country and return each change's (cursor, country), in commit order."""
    for country in countries:
        await sync_to_async(create)(country)
    events = [event async for event in SourceEvent.objects.order_by("-sequence")[: len(countries)]]
    return [(event.cursor, event.source.country) for event in reversed(events)]


def written_in(cursor: str) -> str:
    """Return EVENTS with the cursor written into the document, not passed as a variable."""
    return EVENTS.replace("($after: String)", "").replace("$after", json.dumps(cursor))


def created(country: str, cursor: str) -> dict[str, Any]:
    return {"sourceEvents": {"cursor": cursor, "kind": "CREATED", "source": {"country": country}}}


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("inline", [False, True], ids=["variable", "inline"])
async def test_resuming_delivers_every_change_after_the_cursor_then_live_ones(protocol: str, inline: bool) -> None:
    changes = await make_changes("A", "B", "C", "D", "E")
    (after, _), missed = changes[1], changes[2:]
    async with GraphQLWebSocket(protocol) as ws:
        if inline:  # served on its own (graph.resume): the same deliveries
            operation = await ws.subscribe(written_in(after))
        else:
            operation = await ws.subscribe(EVENTS, {"after": after})
        for cursor, country in missed:
            assert await ws.next_data(operation) == created(country, cursor)
        # Listening since before the first of them: the next change reaches it too.

        [(cursor, country)] = await make_changes("F")
        assert await ws.next_data(operation) == created(country, cursor)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_resuming_after_the_last_change_delivers_only_what_follows(protocol: str) -> None:
    [(after, _)] = await make_changes("A")
    async with GraphQLWebSocket(protocol) as ws:
        operation = await ws.subscribe(EVENTS, {"after": after})
        await until_listening(1)
        [(cursor, country)] = await make_changes("B")
        assert await ws.next_data(operation) == created(country, cursor)


async def test_resuming_replays_only_what_the_filters_select_across_several_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(selectors, "EVENTS_PER_READ", 2)  # five reads for nine changes
    changes = await make_changes("A", "B", "C", "D", "E")
    source_id = await sync_to_async(create)("F")
    for _ in range(3):
        await sync_to_async(services.source_update)(actor=None, source_id=source_id, data={"panel": "Other"})
    [last] = await make_changes("G")
    async with GraphQLWebSocket(TRANSPORT_WS) as ws:
        operation = await ws.subscribe(FILTERED, {"after": changes[0][0]})
        creations = [*changes[1:], (await sync_to_async(_cursor_of_creation)(source_id), "F"), last]
        for cursor, country in creations:
            assert await ws.next_data(operation) == created(country, cursor)
        await until_listening(1)
        await sync_to_async(services.source_update)(actor=None, source_id=source_id, data={"panel": "Last"})
        [(cursor, country)] = await make_changes("H")
        assert await ws.next_data(operation) == created(country, cursor)  # the update was not selected


def _cursor_of_creation(source_id: uuid.UUID) -> str:
    return SourceEvent.objects.get(source_id=source_id, kind="CREATED").cursor


async def test_a_change_committed_while_a_subscriber_replays_comes_after_the_replay_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    changes = await make_changes("A", "B", "C")
    read = selectors.events_between
    during: list[tuple[str, str]] = []

    def events_between(*args: Any, **kwargs: Any) -> list[SourceEvent]:
        if not during:  # the replay's first read: a change commits while it runs
            create("During")
            event = SourceEvent.objects.order_by("-sequence").first()
            during.append((event.cursor, "During"))
        return read(*args, **kwargs)

    monkeypatch.setattr(selectors, "events_between", events_between)
    async with GraphQLWebSocket(TRANSPORT_WS) as ws:
        operation = await ws.subscribe(EVENTS, {"after": changes[0][0]})
        for cursor, country in changes[1:]:
            assert await ws.next_data(operation) == created(country, cursor)
        [(cursor, country)] = during  # committed after the position the replay ends at
        assert await ws.next_data(operation) == created(country, cursor)
        [(cursor, country)] = await make_changes("After")
        assert await ws.next_data(operation) == created(country, cursor)


async def test_resuming_subscribers_share_the_execution_of_live_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    executions: Counter[str] = Counter()
    build = execution.LiveExecutionContext.build_per_event_executor

    def build_per_event_executor(self: execution.LiveExecutionContext, payload: Any) -> Any:
        executions["live"] += 1
        return build(self, payload)

    monkeypatch.setattr(execution.LiveExecutionContext, "build_per_event_executor", build_per_event_executor)
    changes = await make_changes("A", "B", "C")
    async with GraphQLWebSocket(PROTOCOLS[0]) as first, GraphQLWebSocket(PROTOCOLS[1]) as second:
        fresh = await first.subscribe(EVENTS, {"after": None})
        resumed = await second.subscribe(EVENTS, {"after": changes[0][0]})
        for cursor, country in changes[1:]:
            assert await second.next_data(resumed) == created(country, cursor)
        await until_listening(2)
        replayed = executions["live"]

        [(cursor, country)] = await make_changes("D")
        assert await first.next_data(fresh) == created(country, cursor)
        assert await second.next_data(resumed) == created(country, cursor)
        assert executions["live"] == replayed + 1  # one execution for both


def _other_deployments_cursor(event: SourceEvent) -> str:
    mark = cursors._mark(event.sequence, event.source_id, event.version, event.occurred_at, "another-secret")
    return f"{event.sequence:016x}.{mark}"


def _restored_cursor(event: SourceEvent) -> str:
    # The same number in a log restored from a backup, where another change took that number.
    return cursors.cursor_of(event.sequence, uuid.uuid4(), event.version, event.occurred_at)


def _ahead_cursor(event: SourceEvent) -> str:
    return cursors.cursor_of(last_sequence() + 1, event.source_id, event.version, event.occurred_at)


BAD_CURSORS = {
    "malformed": lambda event: "not-a-cursor",
    "number only": lambda event: f"{event.sequence:016x}",
    "empty": lambda event: "",
    "another deployment": _other_deployments_cursor,
    "before a restore": _restored_cursor,
    "ahead of the log": _ahead_cursor,
}


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("kind", list(BAD_CURSORS))
@pytest.mark.parametrize("inline", [False, True], ids=["variable", "inline"])
async def test_a_cursor_this_log_never_issued_is_refused_and_nothing_is_delivered(
    protocol: str, kind: str, inline: bool
) -> None:
    await make_changes("A", "B")
    event = await SourceEvent.objects.order_by("sequence").afirst()
    cursor = await sync_to_async(BAD_CURSORS[kind])(event)
    async with GraphQLWebSocket(protocol) as ws:
        if inline:
            operation = await ws.subscribe(written_in(cursor))
        else:
            operation = await ws.subscribe(EVENTS, {"after": cursor})
        payload = await ws.next_payload(operation)
        assert payload["data"] is None
        [error] = payload["errors"]
        assert error["extensions"] == {"code": "cursor_unknown"}
        assert error["message"].startswith(f"This stream never issued the cursor {cursor[:64]!r}")
        await ws.expect_complete(operation)
        # The socket still serves: a query over the modern protocol, a subscription over both.
        live = await ws.subscribe("subscription { sourceEvents { kind } }")
        await until_listening(1)
        await make_changes("C")
        assert await ws.next_data(live) == {"sourceEvents": {"kind": "CREATED"}}


async def test_a_cursor_signed_with_a_retired_secret_key_is_still_accepted(settings: Any) -> None:
    changes = await make_changes("A", "B")
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "the-new-secret-key-" + "x" * 40
    async with GraphQLWebSocket(TRANSPORT_WS) as ws:
        operation = await ws.subscribe(EVENTS, {"after": changes[0][0]})
        data = await ws.next_data(operation)
        assert data["sourceEvents"]["source"] == {"country": "B"}
        assert data["sourceEvents"]["cursor"] != changes[1][0]  # issued under the new key
        second = await SourceEvent.objects.order_by("sequence").alast()
        assert await sync_to_async(selectors.cursor_position)(data["sourceEvents"]["cursor"]) == second.sequence
