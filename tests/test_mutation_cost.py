"""What a mutation costs the database, statement by statement."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from catalog import services
from catalog.models import Source, SourceEvent, SourceStatus
from tests.support.http import graphql
from tests.support.identities import atoken
from tests.support.queries import statements
from tests.support.sources import source_values

pytestmark = pytest.mark.django_db(transaction=True)

UPDATE = 'mutation($id: ID!) { updateSource(id: $id, input: {country: "%s"}) { ... on Source { country version } } }'
DEACTIVATE = "mutation($id: ID!) { deactivateSource(id: $id) { ... on Source { status version } } }"
# Reading the caller's token, then its permissions (the user's own, then its groups').
SIGN_IN = ["SELECT", "SELECT", "SELECT"]


def verbs(sql: list[str]) -> list[str]:
    """Return each statement's first word, without the BEGIN that SQLite's IMMEDIATE mode sends
    as a statement and psycopg sends by itself for PostgreSQL (neither counts a COMMIT)."""
    return [statement.split()[0] for statement in sql if not statement.startswith("BEGIN")]


async def test_an_update_source_mutation_runs_eight_statements_and_no_savepoint() -> None:
    secret = await atoken("admin")
    source = await sync_to_async(services.source_create)(actor=None, **source_values())
    await graphql(UPDATE % "Spain", {"id": str(source.pk)}, token=secret)  # caches filled, as in a running server

    with statements() as sql:
        result = await graphql(UPDATE % "Italy", {"id": str(source.pk)}, token=secret)

    assert result == {"data": {"updateSource": {"country": "Italy", "version": 3}}}
    # Before: 12, the savepoints of Source.save and of the log entry with their RELEASEs.
    assert verbs(sql) == [
        *SIGN_IN,
        "SELECT",  # the source, locked (the service)
        "SELECT",  # its version, status and lifecycle times under the lock (Source.save)
        "UPDATE",  # the source
        "UPDATE",  # the change's sequence number
        "INSERT",  # the change's log entry
    ]


async def test_a_transition_mutation_runs_seven_statements_and_no_savepoint() -> None:
    secret = await atoken("admin")
    source = await sync_to_async(services.source_create)(actor=None, **source_values())
    await graphql(UPDATE % "Spain", {"id": str(source.pk)}, token=secret)

    with statements() as sql:
        result = await graphql(DEACTIVATE, {"id": str(source.pk)}, token=secret)

    assert result == {"data": {"deactivateSource": {"status": "INACTIVE", "version": 3}}}
    # Before: 9, the savepoint of the log entry and its RELEASE.
    assert verbs(sql) == [*SIGN_IN, "UPDATE", "SELECT", "UPDATE", "INSERT"]


def test_a_refused_change_inside_a_callers_transaction_leaves_that_transaction_usable() -> None:
    # The services keep their savepoint: a batch in one transaction goes on after a refusal.
    source = services.source_create(actor=None, **source_values(status=SourceStatus.INACTIVE))
    with transaction.atomic():
        with pytest.raises(ValidationError):
            services.source_deactivate(actor=None, source_id=source.pk)
        services.source_activate(actor=None, source_id=source.pk)
    assert Source.objects.get(pk=source.pk).status == SourceStatus.ACTIVE
    assert SourceEvent.objects.filter(source_id=source.pk).count() == 2


def test_a_save_whose_log_entry_fails_dooms_the_callers_transaction() -> None:
    # No savepoint of its own, as Django's Model.save: a change that cannot be logged leaves
    # the caller's transaction to roll back whole, not to go on without it.
    source = services.source_create(actor=None, **source_values())
    SourceEvent.objects.create(sequence=10**9, source_id=source.pk, kind="UPDATED", version=2)  # takes version 2
    source.country = "Spain"
    with transaction.atomic():
        with pytest.raises(IntegrityError):
            source.save()
        assert transaction.get_rollback()
    assert Source.objects.get(pk=source.pk).country == "France"
