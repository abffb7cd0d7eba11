"""Reads of the catalog that are more than a field lookup: the data library's counters, the log."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.conf import settings
from django.db.models import Count, F, Q
from django.utils import timezone

from catalog.cursors import marks_change, parse_cursor
from catalog.models import Source, SourceEvent, SourceStatus, parse_source_id, project_today

# The log is read this many changes at a time.
EVENTS_PER_READ = 500


@dataclass(frozen=True)
class MetricCounter:
    key: str
    label: str
    window_days: int
    count: int


@dataclass(frozen=True)
class MetricSection:
    key: str
    title: str
    counters: list[MetricCounter]


@dataclass(frozen=True)
class DataLibrary:
    window_days: int
    generated_at: datetime
    sections: list[MetricSection]


def source_get(source_id: str | uuid.UUID) -> Source | None:
    """Return the source with this id, or None when there is none or the id is no UUID."""
    pk = parse_source_id(source_id)
    return None if pk is None else Source.objects.filter(pk=pk).first()


def data_library_window_start(today: date, window_days: int) -> date:
    """Return the first day of a window of `window_days` days that ends with `today`."""
    return today - timedelta(days=window_days - 1)


def data_library(*, now: datetime | None = None, window_days: int | None = None) -> DataLibrary:
    """Compute the data library's counters in one SQL query over the sources, however many
    sources exist and however long the change log is."""
    now = now or timezone.now()
    window_days = settings.DATA_LIBRARY_WINDOW_DAYS if window_days is None else window_days
    if window_days < 1:
        raise ValueError(f"The data library's window must be at least one day, not {window_days}.")
    today = project_today(now)
    start = data_library_window_start(today, window_days)
    window_opens = timezone.make_aware(datetime.combine(start, time.min), timezone.get_default_timezone())

    active = Q(status=SourceStatus.ACTIVE)
    # "Activated in the window" is defined by the log as "at least one activation (created
    # ACTIVE, activated, reactivated) in [window opens, now]"; here it is "the most recent
    # activation, Source.last_activated_at, in [window opens, now]", which reads no log. The
    # two agree because no change lies after now: if one activation falls in the window, the
    # most recent one is no earlier than it and no later than now, so it falls in the window
    # too; and the most recent one falling in the window is one activation in it. The same
    # holds for deactivations. (A `now` in the past, as the tests pass, sees a source changed
    # after it as of its most recent change.) Sources deleted since are not counted, as before:
    # their row is gone.
    counts = Source.objects.aggregate(
        created=Count("pk", filter=Q(created_at__gte=window_opens, created_at__lte=now)),
        activated=Count("pk", filter=Q(last_activated_at__gte=window_opens, last_activated_at__lte=now)),
        deactivated=Count("pk", filter=Q(last_deactivated_at__gte=window_opens, last_deactivated_at__lte=now)),
        received=Count("pk", filter=active & Q(current_update=today)),
        awaiting=Count("pk", filter=active & Q(current_update__gt=today)),
        delayed=Count("pk", filter=active & Q(current_update__lt=today)),
        pending=Count("pk", filter=active & Q(next_update__gt=today)),
        in_progress=Count(
            "pk",
            filter=active
            & Q(next_update__lte=today)
            & (Q(current_update__isnull=True) | Q(current_update__lt=F("next_update"))),
        ),
        completed=Count("pk", filter=active & Q(current_update__range=(start, today))),
    )

    def counter(key: str, label: str) -> MetricCounter:
        return MetricCounter(key=key, label=label, window_days=window_days, count=counts[key])

    return DataLibrary(
        window_days=window_days,
        generated_at=now,
        sections=[
            MetricSection(
                key="library",
                title="Data Library",
                counters=[
                    counter("created", "Created"),
                    counter("activated", "Activated"),
                    counter("deactivated", "Deactivated"),
                ],
            ),
            MetricSection(
                key="delivery",
                title="Data Delivery",
                counters=[
                    counter("received", "Received"),
                    counter("awaiting", "Awaiting"),
                    counter("delayed", "Delayed"),
                ],
            ),
            MetricSection(
                key="update",
                title="Data Update",
                counters=[
                    counter("pending", "Pending"),
                    counter("in_progress", "In Progress"),
                    counter("completed", "Completed"),
                ],
            ),
        ],
    )


def events_between(
    after: int,
    upto: int,
    *,
    source_ids: Collection[uuid.UUID] | None = None,
    kinds: Collection[str] | None = None,
) -> list[SourceEvent]:
    """Return the logged changes numbered above `after` up to `upto`, in order: at most EVENTS_PER_READ.

    Only those of `source_ids` and of `kinds`, when given.
    """
    changes = SourceEvent.objects.filter(sequence__gt=after, sequence__lte=upto)
    if source_ids is not None:
        changes = changes.filter(source_id__in=source_ids)
    if kinds is not None:
        changes = changes.filter(kind__in=kinds)
    return list(changes.order_by("sequence")[:EVENTS_PER_READ])


def cursor_position(cursor: object) -> int | None:
    """Return the number of the change that `cursor` names, or None when this log never issued it.

    None for anything that is no cursor, a cursor ahead of the log, and one whose change this
    log does not hold as it was (another deployment's, or from before a restore): see
    catalog.cursors.
    """
    parsed = parse_cursor(cursor)
    if parsed is None:
        return None
    sequence, mark = parsed
    event = (
        SourceEvent.objects.filter(sequence=sequence).only("sequence", "source_id", "version", "occurred_at").first()
    )
    if event is None or not marks_change(mark, event.sequence, event.source_id, event.version, event.occurred_at):
        return None
    return sequence
