"""Migrations that move data: run on rows written under the schema before them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("catalog", "0002_event_sequence")]
LIFECYCLE_TIMES = [("catalog", "0003_source_lifecycle_times")]
T = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


@pytest.fixture
def migrator() -> Iterator[MigrationExecutor]:
    """Yield an executor; the database is at the latest migrations again afterwards."""
    executor = MigrationExecutor(connection)
    yield executor
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def test_the_times_of_the_last_activation_and_deactivation_come_from_the_log(migrator: MigrationExecutor) -> None:
    # given: sources and their logs as they were before the fields existed
    migrator.migrate(BEFORE)
    old = migrator.loader.project_state(BEFORE).apps
    old_source, old_event = old.get_model("catalog", "Source"), old.get_model("catalog", "SourceEvent")
    sequence = iter(range(1, 1000))

    def source(created: str, *changes: tuple[str, datetime], at: datetime = T) -> uuid.UUID:
        """Create a source `created` ACTIVE or INACTIVE at `at`, then log `changes` (kind, time)."""
        row = old_source.objects.create(
            created_by="tests", country="France", data_vendor="IQVIA", panel="Retail", data_type="Sales", status=created
        )
        log(row.pk, created, ("CREATED", at), *changes)
        return row.pk

    def log(pk: uuid.UUID, created: str, *changes: tuple[str, datetime]) -> None:
        for version, (kind, at) in enumerate(changes, start=1):
            snapshot = {"id": str(pk), "status": created, "version": version}
            old_event.objects.create(
                sequence=next(sequence), source_id=pk, kind=kind, version=version, occurred_at=at, snapshot=snapshot
            )

    flapping = source("ACTIVE", ("DEACTIVATED", T + HOUR), ("REACTIVATED", T + 2 * HOUR), ("DEACTIVATED", T + 3 * HOUR))
    created_active = source("ACTIVE", ("UPDATED", T + HOUR))
    activated = source("INACTIVE", ("ACTIVATED", T + 2 * HOUR), ("UPDATED", T + 5 * HOUR), at=T + HOUR)
    never_active = source("INACTIVE", ("UPDATED", T + HOUR))
    # a later activation logged before an earlier one: the latest by time counts
    out_of_order = source("ACTIVE", ("REACTIVATED", T + 4 * HOUR), ("ACTIVATED", T + 3 * HOUR))
    # the log of a deleted source changes no row
    log(uuid.uuid4(), "ACTIVE", ("CREATED", T), ("DEACTIVATED", T + HOUR), ("DELETED", T + 2 * HOUR))

    # when
    migrator = MigrationExecutor(connection)
    migrator.migrate(LIFECYCLE_TIMES)

    # then: the latest activation (ACTIVATED, REACTIVATED, CREATED as ACTIVE) and DEACTIVATED of each
    new = migrator.loader.project_state(LIFECYCLE_TIMES).apps.get_model("catalog", "Source")
    times = {pk: (a, d) for pk, a, d in new.objects.values_list("pk", "last_activated_at", "last_deactivated_at")}
    assert times == {
        flapping: (T + 2 * HOUR, T + 3 * HOUR),
        created_active: (T, None),
        activated: (T + 2 * HOUR, None),
        never_active: (None, None),
        out_of_order: (T + 4 * HOUR, None),
    }
