"""The data library's sections and counters, and the delivery status they are built on.

Every test computes the library at a fixed "now" in the project time zone, and builds its sources
with explicit dates, so the expected counts are worked out by hand in the comments.

    NOW           = 2026-11-21 10:00 Europe/Paris (CET, +01:00)
    TODAY         = 2026-11-21
    window        = 30 days including today: 2026-10-23 .. 2026-11-21
    WINDOW_OPENS  = 2026-10-23 00:00 Europe/Paris, which is still summer time (CEST, +02:00;
                    clocks go back on 2026-10-25), so 2026-10-22 22:00 UTC
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from catalog import services
from catalog.models import (
    DeliveryStatus,
    Source,
    SourceEvent,
    SourceEventKind,
    SourceStatus,
    delivery_status_on,
)
from catalog.selectors import DataLibrary, MetricCounter, MetricSection, data_library
from tests.support.sources import source_values
from tests.support.writers import WRITERS, make_writer

pytestmark = pytest.mark.django_db

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 11, 21, 10, 0, tzinfo=PARIS)
TODAY = date(2026, 11, 21)
WINDOW_START = date(2026, 10, 23)  # TODAY - 29 days
WINDOW_OPENS = datetime(2026, 10, 23, 0, 0, tzinfo=PARIS)  # 2026-10-22T22:00:00Z
# Before the window: sources created then count in no "library" counter.
LONG_AGO = datetime(2026, 1, 5, 9, 0, tzinfo=PARIS)
MICROSECOND = timedelta(microseconds=1)
DAY = timedelta(days=1)

ACTIVE = SourceStatus.ACTIVE
INACTIVE = SourceStatus.INACTIVE


def _source(
    *,
    created_at: datetime = LONG_AGO,
    status: str = ACTIVE,
    current_update: date | None = None,
    next_update: date | None = None,
) -> Source:
    """Create a source whose creation (row and CREATED event) happened at `created_at`."""
    source = Source.objects.create(
        **source_values(created_at=created_at, status=status, current_update=current_update, next_update=next_update)
    )
    # The CREATED event is stamped with the wall clock by the signal receiver; move it to the
    # moment the test says the source was created.
    SourceEvent.objects.filter(source_id=source.pk, version=source.version).update(occurred_at=created_at)
    return source


def _transition(change: Callable[..., Source], source: Source, at: datetime) -> Source:
    """Run a lifecycle service on `source` and stamp the change it made with `at`: the event
    it recorded, and the source's time of its last activation or deactivation."""
    changed = change(actor=None, source_id=source.pk)
    SourceEvent.objects.filter(source_id=source.pk, version=changed.version).update(occurred_at=at)
    stamped = "last_activated_at" if changed.status == ACTIVE else "last_deactivated_at"
    # The service stamped the wall clock in the same change (tested below).
    assert getattr(Source.objects.get(pk=source.pk), stamped) == changed.updated_at
    Source.objects.filter(pk=source.pk).update(**{stamped: at})
    return changed


def _counts(library: DataLibrary) -> dict[str, dict[str, int]]:
    return {section.key: {c.key: c.count for c in section.counters} for section in library.sections}


def _library_counts(*, created: int = 0, activated: int = 0, deactivated: int = 0) -> dict[str, int]:
    return {"created": created, "activated": activated, "deactivated": deactivated}


def _delivery_counts(*, received: int = 0, awaiting: int = 0, delayed: int = 0) -> dict[str, int]:
    return {"received": received, "awaiting": awaiting, "delayed": delayed}


def _update_counts(*, pending: int = 0, in_progress: int = 0, completed: int = 0) -> dict[str, int]:
    return {"pending": pending, "in_progress": in_progress, "completed": completed}


def _expected(
    library: dict[str, int] | None = None,
    delivery: dict[str, int] | None = None,
    update: dict[str, int] | None = None,
) -> dict[str, dict[str, int]]:
    return {
        "library": library or _library_counts(),
        "delivery": delivery or _delivery_counts(),
        "update": update or _update_counts(),
    }


# --- shape -----------------------------------------------------------------------------------


def test_sections_counters_titles_and_labels_are_the_contract():
    # given: an empty library
    # when
    library = data_library(now=NOW)

    # then: the keys, titles and labels of API.md, in that order, each counter with windowDays
    assert library.window_days == 30
    assert library.generated_at == NOW
    assert library.sections == [
        MetricSection(
            key="library",
            title="Data Library",
            counters=[
                MetricCounter(key="created", label="Created", window_days=30, count=0),
                MetricCounter(key="activated", label="Activated", window_days=30, count=0),
                MetricCounter(key="deactivated", label="Deactivated", window_days=30, count=0),
            ],
        ),
        MetricSection(
            key="delivery",
            title="Data Delivery",
            counters=[
                MetricCounter(key="received", label="Received", window_days=30, count=0),
                MetricCounter(key="awaiting", label="Awaiting", window_days=30, count=0),
                MetricCounter(key="delayed", label="Delayed", window_days=30, count=0),
            ],
        ),
        MetricSection(
            key="update",
            title="Data Update",
            counters=[
                MetricCounter(key="pending", label="Pending", window_days=30, count=0),
                MetricCounter(key="in_progress", label="In Progress", window_days=30, count=0),
                MetricCounter(key="completed", label="Completed", window_days=30, count=0),
            ],
        ),
    ]


def test_every_counter_counts_in_one_library():
    # given: one source per counter, each counting in as few counters as possible
    _source(created_at=NOW - DAY, status=INACTIVE)  # created (INACTIVE: not activated)
    activated = _source(status=INACTIVE)
    _transition(services.source_activate, activated, NOW - 2 * DAY)  # activated
    deactivated = _source()
    _transition(services.source_deactivate, deactivated, NOW - 3 * DAY)  # deactivated
    _source(current_update=TODAY)  # received, completed
    _source(current_update=TODAY + DAY)  # awaiting (a future date is not "within the window")
    _source(current_update=WINDOW_START - DAY)  # delayed (before the window: not completed)
    _source(next_update=TODAY + DAY)  # pending (delivery UNKNOWN)
    _source(next_update=TODAY)  # in progress (delivery UNKNOWN)

    # when
    library = data_library(now=NOW)

    # then
    # created: the INACTIVE one = 1; activated: `activated` = 1; deactivated: `deactivated` = 1
    # received 1, awaiting 1, delayed 1; pending 1, in progress 1, completed: current_update TODAY = 1
    assert _counts(library) == _expected(
        _library_counts(created=1, activated=1, deactivated=1),
        _delivery_counts(received=1, awaiting=1, delayed=1),
        _update_counts(pending=1, in_progress=1, completed=1),
    )


@pytest.mark.parametrize("window_days", [7, 1])
def test_window_days_argument_sets_the_window_and_every_counter(window_days: int):
    # given: window_days=7 opens on 2026-11-15 00:00 Paris; window_days=1 on 2026-11-21 00:00
    opens = datetime.combine(TODAY - timedelta(days=window_days - 1), datetime.min.time(), tzinfo=PARIS)
    _source(created_at=opens, current_update=opens.date())  # created, activated, completed
    _source(created_at=opens - MICROSECOND, current_update=opens.date() - DAY)  # delayed only

    # when
    library = data_library(now=NOW, window_days=window_days)

    # then: received is 1 only for window_days=1, where the window's first day is today
    received = 1 if window_days == 1 else 0
    assert library.window_days == window_days
    assert {c.window_days for section in library.sections for c in section.counters} == {window_days}
    assert _counts(library) == _expected(
        _library_counts(created=1, activated=1),
        _delivery_counts(received=received, delayed=2 - received),
        _update_counts(completed=1),
    )


def test_window_days_defaults_to_the_setting(settings: Any):
    # given: a 7-day window in the settings, and a source created on its first day (2026-11-15)
    settings.DATA_LIBRARY_WINDOW_DAYS = 7
    _source(created_at=datetime(2026, 11, 15, tzinfo=PARIS))
    _source(created_at=datetime(2026, 11, 15, tzinfo=PARIS) - MICROSECOND)

    # when
    library = data_library(now=NOW)

    # then
    assert library.window_days == 7
    assert {c.window_days for section in library.sections for c in section.counters} == {7}
    assert _counts(library) == _expected(_library_counts(created=1, activated=1))


# --- Data Delivery ---------------------------------------------------------------------------


def test_delivery_counts_active_sources_by_delivery_status():
    # given: ACTIVE sources around today, created long before the window
    _source(current_update=TODAY)  # RECEIVED; completed (in window)
    _source(current_update=TODAY + DAY)  # AWAITING
    _source(current_update=date(2027, 3, 1))  # AWAITING
    _source(current_update=TODAY - DAY)  # DELAYED; completed (2026-11-20 in window)
    _source(current_update=date(2025, 12, 31))  # DELAYED
    _source(current_update=None)  # UNKNOWN: none of the delivery counters

    # when
    library = data_library(now=NOW)

    # then: received 1, awaiting 2, delayed 2; completed = TODAY and TODAY - 1 = 2
    assert _counts(library) == _expected(
        delivery=_delivery_counts(received=1, awaiting=2, delayed=2),
        update=_update_counts(completed=2),
    )


def test_today_is_the_local_date_not_the_utc_date():
    # given: 2026-11-20 23:30 UTC is already 2026-11-21 00:30 in Paris
    now = datetime(2026, 11, 20, 23, 30, tzinfo=UTC)
    _source(current_update=date(2026, 11, 21))  # RECEIVED (local today), completed
    _source(current_update=date(2026, 11, 20))  # DELAYED, completed
    _source(next_update=date(2026, 11, 21))  # in progress (nextUpdate is today)
    _source(created_at=WINDOW_OPENS)  # created, activated: the window still opens 2026-10-23 local

    # when
    library = data_library(now=now)

    # then
    assert library.generated_at == now
    assert _counts(library) == _expected(
        _library_counts(created=1, activated=1),
        _delivery_counts(received=1, delayed=1),
        _update_counts(in_progress=1, completed=2),
    )


# --- Data Update -----------------------------------------------------------------------------


def test_update_counters_around_next_update():
    # given: ACTIVE sources, created long before the window
    _source(next_update=TODAY + DAY)  # pending (UNKNOWN)
    _source(next_update=TODAY + 30 * DAY, current_update=TODAY - 10 * DAY)  # pending; DELAYED; completed
    _source(next_update=TODAY)  # in progress: due today, never delivered (UNKNOWN)
    _source(next_update=TODAY, current_update=TODAY - DAY)  # in progress; DELAYED; completed
    _source(next_update=TODAY, current_update=TODAY)  # delivered on its due day: RECEIVED; completed
    _source(next_update=TODAY - 5 * DAY, current_update=TODAY - 11 * DAY)  # in progress; DELAYED; completed
    _source(next_update=TODAY - 5 * DAY, current_update=TODAY - 2 * DAY)  # delivered: DELAYED; completed
    _source()  # no dates: nothing

    # when
    library = data_library(now=NOW)

    # then
    # pending: TODAY + 1, TODAY + 30 = 2
    # in progress: due TODAY (never / TODAY - 1), due TODAY - 5 (last TODAY - 11) = 3
    # completed: current_update TODAY - 10, TODAY - 1, TODAY, TODAY - 11, TODAY - 2 = 5
    # received: 1; delayed: TODAY - 10, TODAY - 1, TODAY - 11, TODAY - 2 = 4
    assert _counts(library) == _expected(
        delivery=_delivery_counts(received=1, delayed=4),
        update=_update_counts(pending=2, in_progress=3, completed=5),
    )


def test_completed_counts_from_the_first_day_of_the_window():
    # given
    _source(current_update=WINDOW_START)  # 2026-10-23: completed; DELAYED
    _source(current_update=WINDOW_START - DAY)  # 2026-10-22: DELAYED only

    # when
    library = data_library(now=NOW)

    # then
    assert _counts(library) == _expected(
        delivery=_delivery_counts(delayed=2),
        update=_update_counts(completed=1),
    )


def test_inactive_sources_count_in_no_delivery_or_update_counter():
    # given: INACTIVE sources, created yesterday, that would count everywhere if ACTIVE
    yesterday = NOW - DAY
    _source(created_at=yesterday, status=INACTIVE, current_update=TODAY, next_update=TODAY + DAY)
    _source(created_at=yesterday, status=INACTIVE, current_update=TODAY + DAY)
    _source(created_at=yesterday, status=INACTIVE, current_update=TODAY - DAY, next_update=TODAY)
    _source(created_at=yesterday, status=INACTIVE, next_update=TODAY - DAY)
    deactivated = _source(current_update=TODAY - 3 * DAY, next_update=TODAY)
    _transition(services.source_deactivate, deactivated, LONG_AGO + DAY)

    # when
    library = data_library(now=NOW)

    # then: created in the window 4 (created INACTIVE: not activated); every other counter 0
    assert _counts(library) == _expected(_library_counts(created=4))


# --- Data Library ----------------------------------------------------------------------------


def test_created_counts_from_local_midnight_of_the_first_day_up_to_now():
    # given: ACTIVE sources, so their CREATED events count as activations at the same moments
    _source(created_at=WINDOW_OPENS)  # 2026-10-22T22:00Z: counted
    _source(created_at=WINDOW_OPENS - MICROSECOND)  # 2026-10-22 23:59:59.999999 Paris: not
    _source(created_at=NOW)  # counted
    _source(created_at=NOW + MICROSECOND)  # after now: not

    # when
    library = data_library(now=NOW)

    # then
    assert _counts(library) == _expected(_library_counts(created=2, activated=2))


def test_activated_and_deactivated_count_distinct_sources_in_the_window():
    # given
    # 1. created ACTIVE in the window: activated
    _source(created_at=datetime(2026, 11, 1, 12, 0, tzinfo=PARIS))
    # 2. created INACTIVE long ago, activated in the window: activated
    first_activation = _source(status=INACTIVE)
    _transition(services.source_activate, first_activation, datetime(2026, 11, 2, tzinfo=PARIS))
    # 3. deactivated before the window, reactivated in it: activated only
    reactivated = _source()
    _transition(services.source_deactivate, reactivated, datetime(2026, 2, 1, tzinfo=PARIS))
    _transition(services.source_reactivate, reactivated, datetime(2026, 11, 3, tzinfo=PARIS))
    # 4. deactivated and reactivated twice in the window: activated once, deactivated once
    flapping = _source()
    for day in (4, 6):
        _transition(services.source_deactivate, flapping, datetime(2026, 11, day, tzinfo=PARIS))
        _transition(services.source_reactivate, flapping, datetime(2026, 11, day + 1, tzinfo=PARIS))
    # 5. deactivated in the window: deactivated
    retired = _source()
    _transition(services.source_deactivate, retired, datetime(2026, 11, 8, tzinfo=PARIS))
    # 6. created ACTIVE and deactivated in the window: both
    short_lived = _source(created_at=datetime(2026, 11, 9, tzinfo=PARIS))
    _transition(services.source_deactivate, short_lived, datetime(2026, 11, 10, tzinfo=PARIS))
    # 7. created INACTIVE in the window, never activated: created only
    _source(created_at=datetime(2026, 11, 11, tzinfo=PARIS), status=INACTIVE)
    # 8. edited in the window: an UPDATED event is no activation
    edited = _source()
    services.source_update(actor=None, source_id=edited.pk, data={"panel": "Hospital"})
    SourceEvent.objects.filter(source_id=edited.pk, kind=SourceEventKind.UPDATED).update(
        occurred_at=datetime(2026, 11, 12, tzinfo=PARIS)
    )
    # 9. activated one microsecond before the window, deactivated as it opens: deactivated only
    edge = _source(status=INACTIVE)
    _transition(services.source_activate, edge, WINDOW_OPENS - MICROSECOND)
    _transition(services.source_deactivate, edge, WINDOW_OPENS)
    # 10. deactivated after now: nothing
    later = _source()
    _transition(services.source_deactivate, later, NOW + MICROSECOND)

    # when
    library = data_library(now=NOW)

    # then
    # created: 1, 6, 7 = 3
    # activated: 1, 2, 3, 4 (once, despite two reactivations), 6 = 5
    # deactivated: 4 (once, despite two deactivations), 5, 6, 9 = 4
    assert _counts(library) == _expected(_library_counts(created=3, activated=5, deactivated=4))


def test_events_of_a_deleted_source_are_not_counted():
    # given: a source created, deactivated and reactivated in the window, then deleted
    deleted = _source(created_at=datetime(2026, 11, 1, tzinfo=PARIS))
    _transition(services.source_deactivate, deleted, datetime(2026, 11, 2, tzinfo=PARIS))
    _transition(services.source_reactivate, deleted, datetime(2026, 11, 3, tzinfo=PARIS))
    services.source_delete(actor=None, source_id=deleted.pk)
    SourceEvent.objects.filter(source_id=deleted.pk, kind=SourceEventKind.DELETED).update(
        occurred_at=datetime(2026, 11, 4, tzinfo=PARIS)
    )
    # and one kept source created in the window
    _source(created_at=datetime(2026, 11, 5, tzinfo=PARIS))

    # when
    library = data_library(now=NOW)

    # then: the deleted source's log is still there, but only the kept source counts
    assert list(SourceEvent.objects.filter(source_id=deleted.pk).values_list("kind", flat=True)) == [
        SourceEventKind.CREATED,
        SourceEventKind.DEACTIVATED,
        SourceEventKind.REACTIVATED,
        SourceEventKind.DELETED,
    ]
    assert _counts(library) == _expected(_library_counts(created=1, activated=1))


# --- cost ------------------------------------------------------------------------------------


@pytest.mark.parametrize("how_many", [1, 50])
def test_the_library_takes_one_query_however_many_sources(how_many: int, django_assert_num_queries: Any):
    # given: sources created ACTIVE yesterday, delivered today, next due in a week, each
    # deactivated and reactivated today
    for _ in range(how_many):
        source = _source(created_at=NOW - DAY, current_update=TODAY, next_update=TODAY + 7 * DAY)
        _transition(services.source_deactivate, source, NOW - timedelta(hours=2))
        _transition(services.source_reactivate, source, NOW - timedelta(hours=1))

    # when
    with django_assert_num_queries(1):
        library = data_library(now=NOW)

    # then: every source counts once in created, activated, deactivated, received, pending, completed
    assert _counts(library) == _expected(
        _library_counts(created=how_many, activated=how_many, deactivated=how_many),
        _delivery_counts(received=how_many),
        _update_counts(pending=how_many, completed=how_many),
    )


@pytest.mark.parametrize("flips", [1, 300])
def test_the_library_reads_no_change_log_however_long_it_is(flips: int):
    # given: one source deactivated and reactivated `flips` times, so 1 + 2 * flips logged changes
    source = _source(created_at=NOW - DAY)
    for _ in range(flips):
        services.source_deactivate(actor=None, source_id=source.pk)
        services.source_reactivate(actor=None, source_id=source.pk)
    # the changes happened an hour before NOW (the services stamp the wall clock)
    hour_ago = NOW - timedelta(hours=1)
    Source.objects.filter(pk=source.pk).update(last_activated_at=hour_ago, last_deactivated_at=hour_ago)
    assert SourceEvent.objects.filter(source_id=source.pk).count() == 1 + 2 * flips

    # when
    with CaptureQueriesContext(connection) as queries:
        library = data_library(now=NOW)

    # then: one query, on the sources table only
    assert [q["sql"].count(Source._meta.db_table) > 0 for q in queries.captured_queries] == [True]
    assert SourceEvent._meta.db_table not in queries.captured_queries[0]["sql"]
    assert _counts(library) == _expected(_library_counts(created=1, activated=1, deactivated=1))


# --- the source's times of its last activation and deactivation -------------------------------


def _times(source_id: Any) -> tuple[datetime | None, datetime | None]:
    return Source.objects.values_list("last_activated_at", "last_deactivated_at").get(pk=source_id)


def _event_time(source_id: Any) -> datetime:
    return SourceEvent.objects.filter(source_id=source_id).latest("sequence").occurred_at


def _close(a: datetime | None, b: datetime) -> bool:
    # Both are taken from the wall clock in the same transaction, a moment apart.
    return a is not None and abs(a - b) < timedelta(seconds=5)


def test_a_source_created_active_was_activated_when_it_was_created():
    # given / when: one through the service, one by ORM code that says when it was created
    active = services.source_create(actor=None, **source_values())
    backdated = Source.objects.create(**source_values(created_at=NOW))
    inactive = services.source_create(actor=None, **source_values(status=INACTIVE))

    # then
    assert _times(active.pk) == (active.created_at, None)
    assert _times(backdated.pk) == (NOW, None)
    assert _times(inactive.pk) == (None, None)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("writer_name", sorted(WRITERS))
async def test_every_writer_keeps_the_times_of_the_last_activation_and_deactivation(writer_name: str):
    # given: a source created ACTIVE and one created INACTIVE, by the GraphQL API, the admin or the ORM
    writer = await make_writer(writer_name)
    active = await writer.add(createdBy="first", status="ACTIVE")
    new = await writer.add(createdBy="second", status="INACTIVE")
    times = sync_to_async(_times)
    event_time = sync_to_async(_event_time)
    created_at = await sync_to_async(lambda: Source.objects.get(pk=active).created_at)()
    assert await times(active) == (created_at, None)
    assert await times(new) == (None, None)

    # when / then: each transition stamps its own field, and only that one
    await writer.transition("deactivate", active)
    deactivated = (await times(active))[1]
    assert await times(active) == (created_at, deactivated)
    assert _close(deactivated, await event_time(active))

    await writer.transition("reactivate", active)
    reactivated = (await times(active))[0]
    assert await times(active) == (reactivated, deactivated)
    assert _close(reactivated, await event_time(active))
    assert reactivated > deactivated > created_at

    await writer.transition("activate", new)
    activated = (await times(new))[0]
    assert await times(new) == (activated, None)
    assert _close(activated, await event_time(new))

    # and an edit changes neither
    await writer.update(active, panel="Hospital")
    assert await times(active) == (reactivated, deactivated)


def test_saving_an_outdated_instance_keeps_the_times_of_a_transition_since():
    # given: an instance loaded before the source was deactivated
    source = services.source_create(actor=None, **source_values())
    outdated = Source.objects.get(pk=source.pk)
    services.source_deactivate(actor=None, source_id=source.pk)
    stored = _times(source.pk)

    # when: plain ORM code edits another field through the outdated instance
    outdated.country = "Spain"
    outdated.save()

    # then: the deactivation's time stays, as its status does
    assert stored[1] is not None
    assert _times(source.pk) == stored
    assert (outdated.last_activated_at, outdated.last_deactivated_at) == stored


# --- delivery status ---------------------------------------------------------------------------

DELIVERY_STATUSES = [
    (TODAY, DeliveryStatus.RECEIVED),
    (TODAY + DAY, DeliveryStatus.AWAITING),
    (TODAY - DAY, DeliveryStatus.DELAYED),
    (None, DeliveryStatus.UNKNOWN),
]


@pytest.mark.parametrize(("current_update", "expected"), DELIVERY_STATUSES)
def test_delivery_status_on(current_update: date | None, expected: DeliveryStatus):
    # given / when
    status = delivery_status_on(current_update, TODAY)

    # then
    assert status == expected


@pytest.mark.parametrize(("current_update", "expected"), DELIVERY_STATUSES)
def test_source_delivery_status_is_computed_against_today(
    current_update: date | None, expected: DeliveryStatus, monkeypatch: pytest.MonkeyPatch
):
    # given: the clock at NOW, and a stored source
    monkeypatch.setattr(timezone, "now", lambda: NOW)
    source = _source(current_update=current_update)

    # when
    status = Source.objects.get(pk=source.pk).delivery_status

    # then
    assert status == expected


def test_source_delivery_status_uses_the_local_date():
    # given: 2026-11-20 23:30 UTC is 2026-11-21 00:30 in Paris
    source = Source(current_update=date(2026, 11, 21))

    # when
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(timezone, "now", lambda: datetime(2026, 11, 20, 23, 30, tzinfo=UTC))
        status = source.delivery_status

    # then
    assert status == DeliveryStatus.RECEIVED
