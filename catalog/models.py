"""The catalog's data: sources and the log of every change made to them."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.core.validators import ProhibitNullCharactersValidator
from django.db import connection, models, transaction
from django.utils import timezone

from catalog.cursors import cursor_of

TEXT_LENGTH = 255


def text_field(**options: Any) -> models.CharField:
    """Return a text column of the catalog: 255 characters, no NUL (PostgreSQL cannot store it)."""
    return models.CharField(max_length=TEXT_LENGTH, validators=[ProhibitNullCharactersValidator()], **options)


class SourceStatus(models.TextChoices):
    ACTIVE = "ACTIVE", "Active"
    INACTIVE = "INACTIVE", "Inactive"


class DeliveryStatus(models.TextChoices):
    RECEIVED = "RECEIVED", "Received"
    AWAITING = "AWAITING", "Awaiting"
    DELAYED = "DELAYED", "Delayed"
    UNKNOWN = "UNKNOWN", "Unknown"


class SourceEventKind(models.TextChoices):
    CREATED = "CREATED", "Created"
    UPDATED = "UPDATED", "Updated"
    ACTIVATED = "ACTIVATED", "Activated"
    DEACTIVATED = "DEACTIVATED", "Deactivated"
    REACTIVATED = "REACTIVATED", "Reactivated"
    DELETED = "DELETED", "Deleted"


def parse_source_id(value: object) -> uuid.UUID | None:
    """Return `value` as a source id, or None when it is no UUID (such a source cannot exist)."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def project_today(now: datetime | None = None) -> date:
    """Return the date of `now` (default: now) in the project time zone, settings.TIME_ZONE."""
    return timezone.localdate(now, timezone.get_default_timezone())


def delivery_status_on(current_update: date | None, today: date) -> DeliveryStatus:
    """Return the delivery status of a source whose last delivery is `current_update`."""
    if current_update is None:
        return DeliveryStatus.UNKNOWN
    if current_update > today:
        return DeliveryStatus.AWAITING
    if current_update == today:
        return DeliveryStatus.RECEIVED
    return DeliveryStatus.DELAYED


class Source(models.Model):
    """A vendor's data subscription for a country and panel."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    created_by = text_field()
    country = text_field()
    data_vendor = text_field()
    panel = text_field()
    panel_group = text_field(default="DKM")
    scope_of_subscription = text_field(blank=True, default="")
    data_type = text_field()
    granularity = text_field(default="National")
    end_date = models.DateField(null=True, blank=True)
    current_update = models.DateField(null=True, blank=True, help_text="Date of the last delivery.")
    next_update = models.DateField(null=True, blank=True, help_text="Date of the next expected delivery.")
    status = models.CharField(max_length=8, choices=SourceStatus.choices, default=SourceStatus.ACTIVE)
    # Remembers whether the source was ever active, which tells `activate` (first time)
    # from `reactivate` apart without reading the event log.
    first_activated_at = models.DateTimeField(null=True, blank=True, editable=False)
    # When the source was last made ACTIVE (created ACTIVE, activated, reactivated) and last
    # made INACTIVE: the data library counts its "activated" and "deactivated" sources from
    # these, so that counting costs the same however long the change log grows. Kept by
    # save() and the transitions of catalog.services, in the transaction of the change.
    last_activated_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_deactivated_at = models.DateTimeField(null=True, blank=True, editable=False)
    version = models.PositiveIntegerField(default=1, editable=False)

    class Meta:
        ordering = ("-created_at", "-id")
        indexes = (models.Index(fields=("status", "country")),)

    def __str__(self) -> str:
        return f"{self.data_vendor} / {self.country} / {self.panel}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        adding = self._state.adding
        update_fields = kwargs.get("update_fields")
        if update_fields is not None:
            kwargs["update_fields"] = {*update_fields, "version", "updated_at", *_LIFECYCLE_TIMES}
        # The save and the change-log entry written by the post_save receiver commit
        # together, whoever calls save(): a service, the admin or plain ORM code.
        # savepoint=False, as Django's own Model.save_base: inside a caller's transaction a
        # savepoint (two more statements per save) would only let the caller go on after a
        # failed save, but a save that fails here (the row lock, the UPDATE, the log entry)
        # has left nothing a caller could go on with: the whole transaction rolls back.
        # Outside one, this block is the transaction.
        with transaction.atomic(using=kwargs.get("using"), savepoint=False):
            before = None
            if not adding:
                # Read under the row lock, so two concurrent saves never make the same version
                # (on SQLite the IMMEDIATE transaction already holds the database's write lock).
                stored = type(self)._base_manager.select_for_update().filter(pk=self.pk)
                row = stored.values_list("version", "status", *_LIFECYCLE_TIMES).first()
                if row is None:  # the row is gone: Django's save inserts it again
                    row = (0, self.status, *(getattr(self, name) for name in _LIFECYCLE_TIMES))
                version, before, *times = row
                self.version = version + 1
                if self.status == getattr(self, "_loaded_status", self.status):
                    # The caller did not touch the status: keep the one a concurrent transition
                    # may have made since this instance was loaded.
                    self.status = before
                self._loaded_status = before
                # The lifecycle's times are the row's, not the (maybe outdated) instance's:
                # only this method and the transitions change them.
                for name, value in zip(_LIFECYCLE_TIMES, times, strict=True):
                    setattr(self, name, value)
            self._note_lifecycle(before)
            super().save(*args, **kwargs)

    def _note_lifecycle(self, before: str | None) -> None:
        """Stamp the activation or deactivation this save makes (`before`: the stored status)."""
        self._first_activation = False
        if self.status == before:
            return
        now = timezone.now()
        if self.status == SourceStatus.ACTIVE:
            self._first_activation = self.first_activated_at is None
            if self._first_activation:
                self.first_activated_at = now
            # A source created ACTIVE was activated when it was created.
            self.last_activated_at = self.created_at if before is None else now
        elif before == SourceStatus.ACTIVE:
            self.last_deactivated_at = now

    @classmethod
    def from_db(cls, db: str | None, field_names: Any, values: Any) -> Source:
        instance = super().from_db(db, field_names, values)
        # Lets the change log tell a status change made by plain ORM code from an edit.
        instance._loaded_status = instance.__dict__.get("status")
        return instance

    @property
    def delivery_status(self) -> DeliveryStatus:
        return delivery_status_on(self.current_update, project_today())

    @property
    def next_status(self) -> str:
        return self.next_update.isoformat() if self.next_update else "unscheduled"


# Kept by Source.save() and the transitions, never by a form: see Source.last_activated_at.
_LIFECYCLE_TIMES = ("first_activated_at", "last_activated_at", "last_deactivated_at")


class SnapshotEncoder(DjangoJSONEncoder):
    """DjangoJSONEncoder, but times keep their microseconds: a snapshot is exact."""

    def default(self, o: Any) -> Any:
        if isinstance(o, datetime):
            return o.isoformat()
        return super().default(o)


class SourceEvent(models.Model):
    """One committed change to a source, with the source as that change left it."""

    id = models.BigAutoField(primary_key=True)
    # The change's place in commit order, across every process: see next_sequence().
    sequence = models.BigIntegerField(unique=True)
    # Not a foreign key: the log outlives the sources it describes.
    source_id = models.UUIDField(db_index=True)
    kind = models.CharField(max_length=11, choices=SourceEventKind.choices)
    version = models.PositiveIntegerField()
    occurred_at = models.DateTimeField(default=timezone.now, db_index=True)
    # null, not "": the API tells a change nobody signed in made (shell, jobs) apart.
    actor = models.CharField(max_length=150, null=True, blank=True)  # noqa: DJ001
    snapshot = models.JSONField(encoder=SnapshotEncoder, null=True, blank=True)

    class Meta:
        ordering = ("sequence",)
        constraints = (
            # Each version of a source is produced by exactly one change.
            models.UniqueConstraint(fields=("source_id", "version"), name="one_event_per_version"),
        )

    def __str__(self) -> str:
        return f"{self.kind} {self.source_id} v{self.version}"

    @property
    def cursor(self) -> str:
        # Opaque, sorts as a string in commit order, and names this change of this log only.
        return cursor_of(self.sequence, self.source_id, self.version, self.occurred_at)

    @property
    def source(self) -> Source | None:
        return source_from_snapshot(self.snapshot) if self.snapshot is not None else None


class EventSequence(models.Model):
    """One row: the sequence number of the last change written to the log.

    Ids come from a database sequence, handed out when a row is inserted, so two writers can
    commit in the opposite order of their ids. This counter is incremented inside each
    change's transaction instead: its row stays locked until that transaction ends, so
    numbers are handed out in commit order and a committed number means every smaller one
    has committed or rolled back. Subscribers rely on that to deliver in commit order and to
    fill any gap in what the channel layer brought them from the log.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    last = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"last change: {self.last}"


def next_sequence() -> int:
    """Return the next change's sequence number; call inside the transaction that logs it."""
    table = connection.ops.quote_name(EventSequence._meta.db_table)
    # Raw SQL for UPDATE ... RETURNING (PostgreSQL, and SQLite since 3.35), which Django's
    # update() lacks: one statement both takes the row lock and reads the new number.
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET last = last + 1 WHERE id = 1 RETURNING last")  # noqa: S608
        row = cursor.fetchone()
    if row is not None:
        return row[0]
    # The row is gone (a flushed database): start after the log. Concurrent writers insert
    # once; PostgreSQL makes the others wait for that insert's commit, then they increment.
    start = SourceEvent.objects.aggregate(last=models.Max("sequence"))["last"] or 0
    EventSequence.objects.bulk_create([EventSequence(id=1, last=start)], ignore_conflicts=True)
    return next_sequence()


def last_sequence() -> int:
    """Return the sequence number of the last committed change (0 before the first)."""
    return EventSequence.objects.filter(id=1).values_list("last", flat=True).first() or 0


_SNAPSHOT_FIELDS = tuple(f for f in Source._meta.concrete_fields)


def source_snapshot(source: Source) -> dict[str, Any]:
    """Return the source's stored fields as JSON-ready values."""
    return {f.attname: f.value_from_object(source) for f in _SNAPSHOT_FIELDS}


def source_from_snapshot(snapshot: dict[str, Any]) -> Source:
    """Rebuild an unsaved `Source` exactly as a snapshot recorded it."""
    values = {f.attname: f.to_python(snapshot.get(f.attname)) for f in _SNAPSHOT_FIELDS}
    source = Source(**values)
    source._state.adding = False
    return source
