"""The admin: the lifecycle actions go through the services; filters; the change log stays read-only."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.contrib import messages
from django.test import Client

from catalog import admin as catalog_admin
from catalog import models, services
from catalog.models import DeliveryStatus, Source, SourceEvent, SourceEventKind, SourceStatus
from catalog.topics import SOURCE_CHANGED, SOURCES_TOPIC
from tests.support.identities import make_user
from tests.support.listening import until_listening
from tests.support.sources import source_values
from tests.support.websocket import RECEIVE_TIMEOUT, TRANSPORT_WS, GraphQLWebSocket
from tests.support.writers import admin_user

pytestmark = pytest.mark.django_db

EVENTS = "subscription { sourceEvents { kind sourceId version actor source { status version } } }"
SOURCES = "/admin/catalog/source/"
LOG = "/admin/catalog/sourceevent/"


@pytest.fixture
def client() -> Client:
    return signed_in()


def signed_in() -> Client:
    client = Client()
    client.force_login(admin_user())
    return client


def create(**overrides: Any) -> Source:
    return services.source_create(actor=None, **source_values(**overrides))


def source_that_is(state: str, **overrides: Any) -> Source:
    """Return a source that is ACTIVE, INACTIVE and never active ("new"), or INACTIVE again."""
    if state == "new":
        return create(status=SourceStatus.INACTIVE, **overrides)
    source = create(**overrides)
    if state == "inactive again":
        source = services.source_deactivate(actor=None, source_id=source.pk)
    return source


def run_action(client: Client, action: str, *sources: Source) -> list[tuple[int, str]]:
    """POST an action on the changelist as the admin's form does; return the messages it shows."""
    response = client.post(
        SOURCES, {"action": f"{action}_sources", "_selected_action": [str(s.pk) for s in sources]}, follow=True
    )
    assert response.status_code == 200
    assert response.redirect_chain == [(SOURCES, 302)]
    return [(m.level, m.message) for m in response.context["messages"]]


def log_after(sequence: int) -> list[tuple[str, str, int, str | None]]:
    events = SourceEvent.objects.filter(sequence__gt=sequence).order_by("sequence")
    return [(e.kind, str(e.source_id), e.version, e.actor) for e in events]


def row(source: Source) -> dict[str, Any]:
    return Source.objects.filter(pk=source.pk).values().get()


Published = Callable[..., Awaitable[list[dict[str, Any]]]]


@contextlib.asynccontextmanager
async def published_to(group: str) -> AsyncIterator[Published]:
    """Listen on a topic as one more member; yield `published(marker, *ids)` (see below).

    A `sourceEvents` subscriber never delivers a sequence number twice, so it cannot show
    that a change was published only once: this listener sees every message sent.
    """
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(group, channel)

    async def published(marker: str, *source_ids: str) -> list[dict[str, Any]]:
        """Return the messages about these sources, up to and including the marker source's.

        Only about these: Redis pub/sub ignores the database number, so the messages of
        other test runs on the same Redis server reach this listener too.
        """
        about = {marker, *source_ids}
        received = []
        while not received or received[-1]["source_id"] != marker:
            async with asyncio.timeout(RECEIVE_TIMEOUT):  # a guard against a hung test
                message = await layer.receive(channel)
            if message["source_id"] in about:
                received.append(message)
        return received

    try:
        yield published
    finally:
        await layer.group_discard(group, channel)


@contextlib.asynccontextmanager
async def watched() -> AsyncIterator[tuple[GraphQLWebSocket, str, Published]]:
    """Yield a socket, its listening `sourceEvents` subscription, and `published` (see published_to)."""
    async with GraphQLWebSocket(TRANSPORT_WS) as ws:
        operation = await ws.subscribe(EVENTS)
        # Before the listener joins the topic: until then, the subscription is all that listens.
        await until_listening(1)
        async with published_to(SOURCES_TOPIC) as published:
            yield ws, operation, published


def announced(kind: str, source_id: str, version: int) -> dict[str, Any]:
    """Return the message that announces the logged change, as catalog.topics sends it."""
    event = SourceEvent.objects.get(source_id=source_id, version=version, kind=kind)
    return {
        "type": SOURCE_CHANGED,
        "event_id": event.id,
        "sequence": event.sequence,
        "source_id": source_id,
        "kind": kind,
        "version": version,
    }


# --- The lifecycle actions


def test_an_action_records_one_event_by_the_signed_in_user(client: Client) -> None:
    source = services.source_create(actor=None, **source_values())

    response = client.post(
        "/admin/catalog/source/", {"action": "deactivate_sources", "_selected_action": [str(source.pk)]}, follow=True
    )

    assert [str(m) for m in response.context["messages"]] == ["Deactivate: 1 source(s)."]
    assert list(SourceEvent.objects.values_list("kind", "version", "actor")) == [
        (SourceEventKind.CREATED, 1, None),
        (SourceEventKind.DEACTIVATED, 2, "admin"),
    ]


def test_an_invalid_transition_from_the_admin_shows_why_and_changes_nothing(client: Client) -> None:
    source = services.source_create(actor=None, **source_values())

    response = client.post(
        "/admin/catalog/source/", {"action": "reactivate_sources", "_selected_action": [str(source.pk)]}, follow=True
    )

    assert [str(m) for m in response.context["messages"]] == [
        f"{source}: This source is already ACTIVE; only an INACTIVE source can be reactivated."
    ]
    source.refresh_from_db()
    assert (source.status, source.version) == (SourceStatus.ACTIVE, 1)
    assert SourceEvent.objects.count() == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("action", "state", "kind", "status", "version", "success"),
    [
        ("activate", "new", "ACTIVATED", "ACTIVE", 2, "Activate: 1 source(s)."),
        ("deactivate", "active", "DEACTIVATED", "INACTIVE", 2, "Deactivate: 1 source(s)."),
        ("reactivate", "inactive again", "REACTIVATED", "ACTIVE", 3, "Reactivate: 1 source(s)."),
    ],
)
async def test_each_action_records_and_publishes_exactly_one_event_by_the_admin_user(
    action: str, state: str, kind: str, status: str, version: int, success: str
) -> None:
    source = await sync_to_async(source_that_is)(state)
    source_id = str(source.pk)
    stored = await sync_to_async(row)(source)
    client = await sync_to_async(signed_in)()
    async with watched() as (ws, operation, published):
        before = await sync_to_async(models.last_sequence)()

        shown = await sync_to_async(run_action)(client, action, source)
        # The next legitimate change: whatever the action published comes before it.
        marker = str((await sync_to_async(create)(country="Marker")).pk)

        assert shown == [(messages.SUCCESS, success)]
        assert await sync_to_async(log_after)(before) == [
            (kind, source_id, version, "admin"),
            ("CREATED", marker, 1, None),
        ]
        assert (await ws.next_data(operation))["sourceEvents"] == {
            "kind": kind,
            "sourceId": source_id,
            "version": version,
            "actor": "admin",
            "source": {"status": status, "version": version},
        }
        assert (await ws.next_data(operation))["sourceEvents"]["sourceId"] == marker
        assert await published(marker, source_id) == [
            await sync_to_async(announced)(kind, source_id, version),
            await sync_to_async(announced)("CREATED", marker, 1),
        ]
        after = await sync_to_async(row)(source)
        assert {name for name, value in after.items() if value != stored[name]} == {
            "status",
            "version",
            "updated_at",
            *{
                "activate": ("first_activated_at", "last_activated_at"),
                "deactivate": ("last_deactivated_at",),
                "reactivate": ("last_activated_at",),
            }[action],
        }
        assert (after["status"], after["version"]) == (status, version)


@pytest.mark.django_db(transaction=True)
async def test_an_action_on_several_sources_calls_the_service_for_each() -> None:
    # Listed newest first, so the action meets them in the opposite order of creation.
    first = await sync_to_async(source_that_is)("active", country="Austria")
    refused = await sync_to_async(source_that_is)("new", country="Belgium")
    last = await sync_to_async(source_that_is)("active", country="Czechia")
    refused_row = await sync_to_async(row)(refused)
    client = await sync_to_async(signed_in)()
    async with watched() as (ws, operation, published):
        before = await sync_to_async(models.last_sequence)()

        shown = await sync_to_async(run_action)(client, "deactivate", first, refused, last)
        marker = str((await sync_to_async(create)(country="Marker")).pk)

        assert shown == [
            (
                messages.ERROR,
                "IQVIA / Belgium / Retail: Only an ACTIVE source can be deactivated; this source is INACTIVE.",
            ),
            (messages.SUCCESS, "Deactivate: 2 source(s)."),
        ]
        assert await sync_to_async(log_after)(before) == [
            ("DEACTIVATED", str(last.pk), 2, "admin"),
            ("DEACTIVATED", str(first.pk), 2, "admin"),
            ("CREATED", marker, 1, None),
        ]
        received = [(await ws.next_data(operation))["sourceEvents"] for _ in range(3)]
        assert [(e["kind"], e["sourceId"], e["version"], e["actor"]) for e in received] == [
            ("DEACTIVATED", str(last.pk), 2, "admin"),
            ("DEACTIVATED", str(first.pk), 2, "admin"),
            ("CREATED", marker, 1, None),
        ]
        assert await published(marker, str(first.pk), str(refused.pk), str(last.pk)) == [
            await sync_to_async(announced)("DEACTIVATED", str(last.pk), 2),
            await sync_to_async(announced)("DEACTIVATED", str(first.pk), 2),
            await sync_to_async(announced)("CREATED", marker, 1),
        ]
        assert await sync_to_async(row)(refused) == refused_row


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("action", "state", "error"),
    [
        ("activate", "active", "This source is already ACTIVE; only an INACTIVE source can be activated."),
        ("activate", "inactive again", "This source is INACTIVE and was active before: reactivate it instead."),
        ("deactivate", "new", "Only an ACTIVE source can be deactivated; this source is INACTIVE."),
        ("deactivate", "inactive again", "Only an ACTIVE source can be deactivated; this source is INACTIVE."),
        ("reactivate", "new", "This source is INACTIVE and has never been active: activate it instead."),
        ("reactivate", "active", "This source is already ACTIVE; only an INACTIVE source can be reactivated."),
    ],
)
async def test_an_invalid_transition_shows_the_service_error_and_changes_and_publishes_nothing(
    action: str, state: str, error: str
) -> None:
    source = await sync_to_async(source_that_is)(state)
    unchanged = await sync_to_async(row)(source)
    client = await sync_to_async(signed_in)()
    async with watched() as (ws, operation, published):
        before = await sync_to_async(models.last_sequence)()

        shown = await sync_to_async(run_action)(client, action, source)
        marker = str((await sync_to_async(create)(country="Marker")).pk)

        assert shown == [(messages.ERROR, f"IQVIA / France / Retail: {error}")]
        assert await sync_to_async(row)(source) == unchanged
        assert await sync_to_async(log_after)(before) == [("CREATED", marker, 1, None)]
        assert (await ws.next_data(operation))["sourceEvents"]["sourceId"] == marker
        assert await published(marker, str(source.pk)) == [await sync_to_async(announced)("CREATED", marker, 1)]


def test_a_reader_in_the_admin_is_offered_no_action_and_cannot_post_one() -> None:
    reader = make_user("reader")
    reader.is_staff = True
    reader.save()
    client = Client()
    client.force_login(reader)
    source = create()

    listing = client.get(SOURCES)
    assert listing.status_code == 200
    assert 'name="action"' not in listing.content.decode()
    # Without actions the admin ignores the POST and shows the list again.
    posted = client.post(SOURCES, {"action": "deactivate_sources", "_selected_action": [str(source.pk)]})
    assert (posted.status_code, list(posted.context["messages"])) == (200, [])
    assert (row(source)["status"], SourceEvent.objects.count()) == (SourceStatus.ACTIVE, 1)


def test_the_status_is_read_only_once_a_source_exists(client: Client) -> None:
    source = services.source_create(actor=None, **source_values())
    form = {
        name: getattr(source, name) or ""
        for name in ("created_by", "country", "data_vendor", "panel", "panel_group", "data_type", "granularity")
    } | {"status": SourceStatus.INACTIVE, "country": "Spain"}

    assert client.post(f"/admin/catalog/source/{source.pk}/change/", form).status_code == 302

    source.refresh_from_db()
    assert (source.country, source.status, source.version) == ("Spain", SourceStatus.ACTIVE, 2)


def test_the_change_form_shows_the_computed_fields_read_only(client: Client) -> None:
    source = create(current_update=dt.date(2020, 1, 2), next_update=None)

    response = client.get(f"{SOURCES}{source.pk}/change/")

    form = response.context["adminform"]
    # Editable: what updateSource may change; who created it and the status are read-only.
    assert set(form.form.fields) == services.PATCHABLE_FIELDS
    read_only = {
        field.field["name"]: field.contents()
        for fieldset in form
        for line in fieldset
        for field in line
        if field.is_readonly
    }
    assert {name: read_only[name] for name in ("status", "delivery_status", "next_status", "version")} == {
        "status": "Active",
        "delivery_status": "Delayed",
        "next_status": "unscheduled",
        "version": "1",
    }
    assert read_only["change_log"] == f'<a href="{LOG}?source_id={source.pk}">1 change(s)</a>'


# --- Filters and search of the sources


@pytest.mark.parametrize(
    ("status", "panels"),
    [
        (DeliveryStatus.RECEIVED, ["today"]),
        (DeliveryStatus.AWAITING, ["tomorrow"]),
        (DeliveryStatus.DELAYED, ["yesterday", "long ago"]),
        (DeliveryStatus.UNKNOWN, ["never"]),
    ],
)
def test_the_delivery_status_filter_returns_exactly_the_sources_with_that_status(
    client: Client, monkeypatch: pytest.MonkeyPatch, status: DeliveryStatus, panels: list[str]
) -> None:
    # 23:30 UTC is already the next day in Paris, the project's time zone: "today" is the 22nd.
    today = models.project_today(dt.datetime(2026, 11, 21, 23, 30, tzinfo=dt.UTC))
    assert today == dt.date(2026, 11, 22)
    monkeypatch.setattr(catalog_admin, "project_today", lambda: today)
    for panel, current_update in [
        ("never", None),
        ("long ago", dt.date(2020, 1, 1)),
        ("yesterday", dt.date(2026, 11, 21)),
        ("today", dt.date(2026, 11, 22)),
        ("tomorrow", dt.date(2026, 11, 23)),
    ]:
        create(panel=panel, current_update=current_update)

    response = client.get(SOURCES, {"delivery_status": status.value})

    listed = response.context["cl"].result_list
    assert [s.panel for s in listed] == panels  # newest first
    assert {models.delivery_status_on(s.current_update, today) for s in listed} == {status}


def test_the_sources_are_searched_by_id_and_text(client: Client) -> None:
    wanted = create(country="Portugal", created_by="alice")
    create(country="Spain", created_by="bob")

    def found(term: str) -> list[str]:
        return [str(s.pk) for s in client.get(SOURCES, {"q": term}).context["cl"].result_list]

    assert found(str(wanted.pk)) == [str(wanted.pk)]
    assert found(wanted.pk.hex[:8]) == [str(wanted.pk)]
    assert found("portu") == [str(wanted.pk)]
    assert found("alice") == [str(wanted.pk)]
    assert found(str(uuid.uuid4())) == []


@pytest.mark.parametrize(
    "path",
    [
        "/admin/catalog/source/",
        "/admin/catalog/source/?delivery_status=UNKNOWN&q=France",
        "/admin/catalog/source/?_facets=True&delivery_status=DELAYED&status__exact=ACTIVE",
        "/admin/catalog/source/add/",
        "/admin/catalog/sourceevent/",
        "/admin/catalog/sourceevent/?kind__exact=CREATED&source_id=nonsense&q=admin",
        "/admin/catalog/sourceevent/?_facets=True&kind__exact=CREATED&source_id=",
        "/admin/",
    ],
)
def test_admin_pages_render(client: Client, path: str) -> None:
    services.source_create(actor=None, **source_values())
    assert client.get(path).status_code == 200


def test_api_tokens_are_in_the_admin(client: Client) -> None:
    assert '<a href="/admin/accounts/apitoken/">' in client.get("/admin/").content.decode()


# --- The change log


@pytest.fixture
def history() -> dict[str, str]:
    """Two sources and their changes, by different actors; return their ids by name."""
    kept = services.source_create(actor="alice", **source_values(country="Kept"))
    gone = services.source_create(actor=None, **source_values(country="Gone"))
    services.source_deactivate(actor="bob", source_id=kept.pk)
    services.source_update(actor="alice", source_id=gone.pk, data={"panel": "Hospital"})
    services.source_delete(actor="bob", source_id=gone.pk)
    services.source_reactivate(actor="alice", source_id=kept.pk)
    return {"kept": str(kept.pk), "gone": str(gone.pk)}


def listed(client: Client, **query: str) -> list[tuple[str, str, int]]:
    response = client.get(LOG, query)
    assert response.status_code == 200
    return [(e.kind, str(e.source_id), e.version) for e in response.context["cl"].result_list]


def test_the_change_log_lists_every_change_newest_first_in_commit_order(
    client: Client, history: dict[str, str]
) -> None:
    kept, gone = history["kept"], history["gone"]
    assert listed(client) == [
        ("REACTIVATED", kept, 3),
        ("DELETED", gone, 3),
        ("UPDATED", gone, 2),
        ("DEACTIVATED", kept, 2),
        ("CREATED", gone, 1),
        ("CREATED", kept, 1),
    ]
    sequences = [e.sequence for e in client.get(LOG).context["cl"].result_list]
    assert sequences == sorted(SourceEvent.objects.values_list("sequence", flat=True), reverse=True)


def test_the_change_log_is_filtered_by_kind_and_source(client: Client, history: dict[str, str]) -> None:
    kept, gone = history["kept"], history["gone"]
    assert listed(client, kind__exact="CREATED") == [("CREATED", gone, 1), ("CREATED", kept, 1)]
    assert listed(client, source_id=gone) == [("DELETED", gone, 3), ("UPDATED", gone, 2), ("CREATED", gone, 1)]
    assert listed(client, source_id=f"  {uuid.UUID(kept).hex}  ") == [
        ("REACTIVATED", kept, 3),
        ("DEACTIVATED", kept, 2),
        ("CREATED", kept, 1),
    ]
    assert listed(client, kind__exact="CREATED", source_id=kept) == [("CREATED", kept, 1)]
    assert listed(client, source_id="not-a-uuid") == []
    assert listed(client, source_id=str(uuid.uuid4())) == []


def test_the_source_filter_keeps_the_other_filters_and_the_search(client: Client, history: dict[str, str]) -> None:
    page = client.get(LOG, {"kind__exact": "CREATED", "q": "alice", "source_id": history["kept"]}).content.decode()
    assert '<input type="hidden" name="kind__exact" value="CREATED">' in page
    assert '<input type="hidden" name="q" value="alice">' in page
    assert f'name="source_id" value="{history["kept"]}"' in page


def test_the_change_log_is_searched_by_source_id_and_actor(client: Client, history: dict[str, str]) -> None:
    kept, gone = history["kept"], history["gone"]
    assert listed(client, q=gone) == [("DELETED", gone, 3), ("UPDATED", gone, 2), ("CREATED", gone, 1)]
    assert listed(client, q=uuid.UUID(kept).hex[:8]) == [
        ("REACTIVATED", kept, 3),
        ("DEACTIVATED", kept, 2),
        ("CREATED", kept, 1),
    ]
    assert listed(client, q="bob") == [("DELETED", gone, 3), ("DEACTIVATED", kept, 2)]


def test_the_change_log_cannot_be_edited_from_the_admin(client: Client) -> None:
    services.source_create(actor=None, **source_values())
    event = SourceEvent.objects.get()
    assert client.get("/admin/catalog/sourceevent/add/").status_code == 403
    assert client.post(f"/admin/catalog/sourceevent/{event.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Source.objects.count() == 1


def test_the_change_log_is_viewable_but_offers_no_add_change_or_delete(client: Client, history: dict[str, str]) -> None:
    event = SourceEvent.objects.get(source_id=history["kept"], version=2)
    stored = list(SourceEvent.objects.values())

    listing = client.get(LOG)
    page = client.get(f"{LOG}{event.pk}/change/")

    assert listing.context["has_add_permission"] is False
    assert listing.context["action_form"] is None  # no actions, so no "delete selected"
    assert f'href="{LOG}add/"' not in listing.content.decode()
    assert page.status_code == 200
    assert (page.context["has_change_permission"], page.context["has_delete_permission"]) == (False, False)
    assert 'name="_save"' not in page.content.decode()
    assert f'href="{LOG}{event.pk}/delete/"' not in page.content.decode()
    assert client.get(f"{LOG}add/").status_code == 403
    assert client.post(f"{LOG}add/", {"kind": "CREATED"}).status_code == 403
    assert client.post(f"{LOG}{event.pk}/change/", {"actor": "mallory"}).status_code == 403
    assert client.get(f"{LOG}{event.pk}/delete/").status_code == 403
    assert client.post(f"{LOG}{event.pk}/delete/", {"post": "yes"}).status_code == 403
    deleting = client.post(LOG, {"action": "delete_selected", "_selected_action": [event.pk]})
    assert (deleting.status_code, list(deleting.context["messages"])) == (200, [])
    assert list(SourceEvent.objects.values()) == stored


def test_an_event_shows_its_snapshot_readably(client: Client, history: dict[str, str]) -> None:
    deactivated = SourceEvent.objects.get(source_id=history["kept"], version=2)
    deleted = SourceEvent.objects.get(source_id=history["gone"], kind="DELETED")

    page = client.get(f"{LOG}{deactivated.pk}/change/").content.decode()
    assert "<tr><th>Country</th><td>Kept</td></tr>" in page
    assert "<tr><th>Status</th><td>INACTIVE</td></tr>" in page
    assert "<tr><th>Version</th><td>2</td></tr>" in page
    assert "<tr><th>End date</th><td>—</td></tr>" in page
    assert f'<a href="{SOURCES}{history["kept"]}/change/">{history["kept"]}</a>' in page
    gone_page = client.get(f"{LOG}{deleted.pk}/change/").content.decode()
    assert "None: this change deleted the source." in gone_page
    assert f"{history['gone']} (deleted since; " in gone_page
