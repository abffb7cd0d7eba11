"""The admin: the lifecycle actions go through the services; its pages and static files load."""

from __future__ import annotations

import pytest
from django.test import Client

from catalog import services
from catalog.models import Source, SourceEvent, SourceEventKind, SourceStatus
from tests.conftest import source_values
from tests.writers import admin_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def client() -> Client:
    client = Client()
    client.force_login(admin_user())
    return client


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


def test_the_status_is_read_only_once_a_source_exists(client: Client) -> None:
    source = services.source_create(actor=None, **source_values())
    form = {
        name: getattr(source, name) or ""
        for name in ("created_by", "country", "data_vendor", "panel", "panel_group", "data_type", "granularity")
    } | {"status": SourceStatus.INACTIVE, "country": "Spain"}

    assert client.post(f"/admin/catalog/source/{source.pk}/change/", form).status_code == 302

    source.refresh_from_db()
    assert (source.country, source.status, source.version) == ("Spain", SourceStatus.ACTIVE, 2)


@pytest.mark.parametrize(
    "path",
    [
        "/admin/catalog/source/",
        "/admin/catalog/source/?delivery_status=UNKNOWN&q=France",
        "/admin/catalog/sourceevent/",
    ],
)
def test_admin_lists_render(client: Client, path: str) -> None:
    services.source_create(actor=None, **source_values())
    assert client.get(path).status_code == 200


def test_the_change_log_cannot_be_edited_from_the_admin(client: Client) -> None:
    services.source_create(actor=None, **source_values())
    event = SourceEvent.objects.get()
    assert client.get("/admin/catalog/sourceevent/add/").status_code == 403
    assert client.post(f"/admin/catalog/sourceevent/{event.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Source.objects.count() == 1
