"""Every topic (channel-layer group) and event type, and the functions that publish to them."""

from __future__ import annotations

from collections.abc import Iterable

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from catalog.models import SourceEvent

# The channel-layer message type of a committed change.
SOURCE_CHANGED = "catalog.source_changed"

# Every change to any source, announced once: each process's change feed listens here.
SOURCES_TOPIC = "catalog.sources"


def source_changed_message(event: SourceEvent) -> dict[str, object]:
    """Return the small message that announces a committed change (ids, not instances)."""
    return {
        "type": SOURCE_CHANGED,
        "event_id": event.id,
        "sequence": event.sequence,
        "source_id": str(event.source_id),
        "kind": event.kind,
        "version": event.version,
    }


def publish_source_event(event: SourceEvent) -> None:
    """Announce a committed change to everyone listening; call only after commit."""
    layer = get_channel_layer()
    if layer is None:
        return
    # One topic: each process's change feed (graph.feed) hears it once for all its subscribers.
    async_to_sync(layer.group_send)(SOURCES_TOPIC, source_changed_message(event))


# --- Access: each process's access watch (graph.access) hears which users and tokens changed.
# Here too so that every group name of the service is built in this one module.
ACCESS_CHANGED = "access.changed"
ACCESS_TOPIC = "access"


def publish_access_changed(
    *, user_ids: Iterable[int] = (), token_ids: Iterable[int] = (), ended_session: str | None = None
) -> None:
    """Ask the sockets of these users and tokens to check their credentials again; call only after commit.

    `ended_session`: the key of a session that has just signed out, which its sockets cannot
    tell from the session store yet (Django announces the sign-out before deleting it).
    """
    layer = get_channel_layer()
    if layer is not None:
        message = {
            "type": ACCESS_CHANGED,
            "user_ids": [int(pk) for pk in user_ids],
            "token_ids": [int(pk) for pk in token_ids],
            "ended_session": ended_session,
        }
        async_to_sync(layer.group_send)(ACCESS_TOPIC, message)
