"""Every write to the catalog: atomic, validated, and logged as a SourceEvent.

The change log entry and the publish are written by the receivers in `catalog.signals`, so
these services, the admin and plain ORM code all log and publish exactly once per change.

Each service's `transaction.atomic()` keeps its savepoint, unlike the blocks inside it
(Source.save's, the log's): a service may run inside a caller's transaction that goes on
after a refused change (a ValidationError is an answer, not a failure: a batch reports it
and continues), and the savepoint is what undoes that one service's work. A mutation calls
a service outside any transaction, where the block is the transaction and costs no savepoint.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import date
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import F, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from catalog.actors import acting_as
from catalog.errors import ErrorCode, field_error, normalized
from catalog.models import Source, SourceEventKind, SourceStatus, parse_source_id
from catalog.signals import source_transitioned

# Fields a patch may change. `status` changes only through the transitions, which check
# the lifecycle; `created_by` is fixed at creation.
PATCHABLE_FIELDS = frozenset(
    {
        "country",
        "data_vendor",
        "panel",
        "panel_group",
        "scope_of_subscription",
        "data_type",
        "granularity",
        "end_date",
        "current_update",
        "next_update",
    }
)


def source_create(
    *,
    actor: str | None,
    country: str,
    data_vendor: str,
    panel: str,
    data_type: str,
    created_by: str | None = None,
    panel_group: str = "DKM",
    scope_of_subscription: str = "",
    granularity: str = "National",
    end_date: date | str | None = None,
    current_update: date | str | None = None,
    next_update: date | str | None = None,
    status: str = SourceStatus.ACTIVE,
) -> Source:
    """Create a source; `created_by` defaults to the acting user."""
    if created_by is None:
        created_by = actor
        if created_by is None:
            raise field_error("created_by", "Who created the source is required.", ErrorCode.REQUIRED)
    source = Source(
        created_by=_stripped(created_by),
        country=_stripped(country),
        data_vendor=_stripped(data_vendor),
        panel=_stripped(panel),
        panel_group=_stripped(panel_group),
        scope_of_subscription=_stripped(scope_of_subscription) or "",
        data_type=_stripped(data_type),
        granularity=_stripped(granularity),
        end_date=end_date,
        current_update=current_update,
        next_update=next_update,
        status=status,
    )
    _full_clean(source)
    with acting_as(actor), transaction.atomic():
        source.save(force_insert=True)
    return source


def source_update(
    *,
    actor: str | None,
    source_id: str | uuid.UUID,
    data: Mapping[str, Any],
    expected_version: int | None = None,
) -> Source:
    """Change the fields named in `data`; unchanged when nothing differs."""
    unknown = set(data) - PATCHABLE_FIELDS
    if unknown:
        raise TypeError(f"source_update cannot change {sorted(unknown)}")
    with acting_as(actor), transaction.atomic():
        # Locked so the version check, the edit and its log entry see no concurrent change.
        source = _get(source_id, lock=True)
        if expected_version is not None and source.version != expected_version:
            raise field_error(
                "expected_version",
                f"The source is at version {source.version}, not {expected_version}: it was changed since you read it.",
                ErrorCode.VERSION_CONFLICT,
            )
        before = {name: getattr(source, name) for name in data}
        for name, value in data.items():
            value = _stripped(value)
            if name == "scope_of_subscription" and value is None:
                value = ""  # optional text: null clears it
            setattr(source, name, value)
        _full_clean(source)
        changed = [name for name in data if getattr(source, name) != before[name]]
        if changed:
            source.save(update_fields=changed)
    return source


def source_activate(*, actor: str | None, source_id: str | uuid.UUID) -> Source:
    """Make a source that has never been active ACTIVE."""
    return _transition(source_id, SourceEventKind.ACTIVATED, actor=actor)


def source_deactivate(*, actor: str | None, source_id: str | uuid.UUID) -> Source:
    """Make an ACTIVE source INACTIVE."""
    return _transition(source_id, SourceEventKind.DEACTIVATED, actor=actor)


def source_reactivate(*, actor: str | None, source_id: str | uuid.UUID) -> Source:
    """Make an INACTIVE source that was active before ACTIVE again."""
    return _transition(source_id, SourceEventKind.REACTIVATED, actor=actor)


def source_delete(*, actor: str | None, source_id: str | uuid.UUID) -> uuid.UUID:
    """Delete a source; its change log stays."""
    with acting_as(actor), transaction.atomic():
        source = _get(source_id, lock=True)
        pk = source.pk
        source.delete()
    return pk


# kind: (status required before, whether it must have been active before, status after)
_TRANSITIONS: dict[SourceEventKind, tuple[SourceStatus, bool, SourceStatus]] = {
    SourceEventKind.ACTIVATED: (SourceStatus.INACTIVE, False, SourceStatus.ACTIVE),
    SourceEventKind.DEACTIVATED: (SourceStatus.ACTIVE, True, SourceStatus.INACTIVE),
    SourceEventKind.REACTIVATED: (SourceStatus.INACTIVE, True, SourceStatus.ACTIVE),
}


def _transition(source_id: str | uuid.UUID, kind: SourceEventKind, *, actor: str | None) -> Source:
    required, was_active, after = _TRANSITIONS[kind]
    pk = _parse_id(source_id)
    now = timezone.now()
    with acting_as(actor), transaction.atomic():
        # One guarded UPDATE, first in the transaction: of two concurrent calls only one
        # matches, and it touches nothing but the status, so no concurrent edit is lost.
        # The time of the change it makes goes with it (see Source.last_activated_at).
        stamp = {"last_activated_at": now} if after == SourceStatus.ACTIVE else {"last_deactivated_at": now}
        matched = Source.objects.filter(pk=pk, status=required, first_activated_at__isnull=not was_active).update(
            status=after,
            version=F("version") + 1,
            updated_at=now,
            first_activated_at=Coalesce(F("first_activated_at"), Value(now, output_field=models.DateTimeField())),
            **stamp,
        )
        source = _get(pk)
        if not matched:
            raise field_error("id", _refusal(kind, source), ErrorCode.INVALID_TRANSITION)
        source_transitioned.send(sender=Source, source=source, kind=kind)
    return source


def _refusal(kind: SourceEventKind, source: Source) -> str:
    if kind == SourceEventKind.DEACTIVATED:
        return f"Only an ACTIVE source can be deactivated; this source is {source.status}."
    if source.status == SourceStatus.ACTIVE:
        return f"This source is already ACTIVE; only an INACTIVE source can be {kind.label.lower()}."
    if kind == SourceEventKind.ACTIVATED:
        return "This source is INACTIVE and was active before: reactivate it instead."
    return "This source is INACTIVE and has never been active: activate it instead."


def _parse_id(source_id: str | uuid.UUID) -> uuid.UUID:
    pk = parse_source_id(source_id)
    if pk is None:
        raise _not_found(source_id)
    return pk


def _get(source_id: str | uuid.UUID, *, lock: bool = False) -> Source:
    queryset = Source.objects.select_for_update() if lock else Source.objects.all()
    pk = _parse_id(source_id)
    try:
        return queryset.get(pk=pk)
    except Source.DoesNotExist:
        raise _not_found(source_id) from None


def _not_found(source_id: object) -> ValidationError:
    return field_error("id", f"No source has the id {str(source_id)[:64]!r}.", ErrorCode.NOT_FOUND)


def _stripped(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def _full_clean(source: Source) -> None:
    """Validate every field, reporting all that are wrong at once."""
    errors: dict[str, list[ValidationError]] = {}
    for field in _DATE_FIELDS:
        # full_clean skips "" on a blank-able field and the database would then choke on it:
        # parse every text date here, so "" is `invalid` like any other bad date.
        value = getattr(source, field.attname)
        if isinstance(value, str):
            try:
                setattr(source, field.attname, field.to_python(value))
            except ValidationError as error:
                errors[field.name] = error.error_list
    try:
        source.full_clean(exclude=set(errors), validate_unique=False, validate_constraints=False)
    except ValidationError as error:
        errors |= error.error_dict
    if errors:
        raise normalized(ValidationError(errors))


_DATE_FIELDS = tuple(
    field
    for field in Source._meta.concrete_fields
    if isinstance(field, models.DateField) and not isinstance(field, models.DateTimeField)
)
