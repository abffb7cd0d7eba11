"""Receivers that log every committed change to a source and publish it after commit."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete, post_save, pre_delete
from django.dispatch import Signal, receiver

from catalog.actors import current_actor
from catalog.models import Source, SourceEvent, SourceEventKind, SourceStatus, next_sequence, source_snapshot
from catalog.topics import publish_source_event

# Sent by the transitions in catalog.services, which change a row with a guarded
# queryset UPDATE (so post_save never fires). Arguments: source (as changed), kind.
source_transitioned = Signal()


@receiver(post_save, sender=Source, dispatch_uid="catalog.log_source_saved")
def log_source_saved(sender: type[Source], instance: Source, created: bool, raw: bool, **kwargs: Any) -> None:
    if raw:  # loaddata restores rows as they were; they are not changes
        return
    _record(instance, SourceEventKind.CREATED if created else _kind_of_save(instance))
    instance._loaded_status = instance.status


@receiver(source_transitioned, dispatch_uid="catalog.log_source_transitioned")
def log_source_transitioned(sender: type[Source], source: Source, kind: SourceEventKind, **kwargs: Any) -> None:
    _record(source, kind)


@receiver(pre_delete, sender=Source, dispatch_uid="catalog.lock_source_deleted")
def lock_source_deleted(sender: type[Source], instance: Source, **kwargs: Any) -> None:
    # The instance may be older than the row: its deletion is one more than the stored version.
    stored = Source._base_manager.select_for_update().filter(pk=instance.pk)
    instance.version = stored.values_list("version", flat=True).first() or instance.version


@receiver(post_delete, sender=Source, dispatch_uid="catalog.log_source_deleted")
def log_source_deleted(sender: type[Source], instance: Source, **kwargs: Any) -> None:
    _record(instance, SourceEventKind.DELETED)


def _kind_of_save(source: Source) -> SourceEventKind:
    """Name a save by plain ORM code that changed the status as the transition it made."""
    loaded = getattr(source, "_loaded_status", source.status)
    if loaded == source.status:
        return SourceEventKind.UPDATED
    if source.status == SourceStatus.INACTIVE:
        return SourceEventKind.DEACTIVATED
    if getattr(source, "_first_activation", False):
        return SourceEventKind.ACTIVATED
    return SourceEventKind.REACTIVATED


def _record(source: Source, kind: SourceEventKind) -> None:
    deleted = kind == SourceEventKind.DELETED
    # Atomic, even for plain ORM code in autocommit mode: the sequence number must commit
    # with its event, or a subscriber could take a number that commits later as a gap.
    # savepoint=False: every caller is inside a transaction already (Source.save's, Django's
    # deletion's, a transition's), and a change whose log entry fails must not commit at
    # all, so there is nothing a savepoint would let survive; it would cost two statements
    # per change.
    with transaction.atomic(savepoint=False):
        event = SourceEvent.objects.create(
            sequence=next_sequence(),
            source_id=source.pk,
            kind=kind,
            # A deletion is one more change of the source.
            version=source.version + 1 if deleted else source.version,
            actor=current_actor(),
            snapshot=None if deleted else source_snapshot(source),
        )

        # After commit only: a rolled-back change must publish nothing. robust: the change is
        # committed whatever happens to the channel layer, so a publish failure is logged, not
        # raised (the change feed then finds the change in the log: see graph.feed).
        # A function, not functools.partial: Django names the failed callback by __qualname__.
        def publish() -> None:
            publish_source_event(event)

        transaction.on_commit(publish, robust=True)
