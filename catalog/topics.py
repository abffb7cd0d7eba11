"""Every topic (channel-layer group) and event type, and the one function that publishes."""

from __future__ import annotations

import uuid

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from catalog.models import SourceEvent

# The channel-layer message type; a consumer's listen_to_channel must use exactly this.
SOURCE_CHANGED = "catalog.source_changed"

# Every change to any source: live lists, the data library and the event stream listen here.
SOURCES_TOPIC = "catalog.sources"


def source_topic(source_id: uuid.UUID | str) -> str:
    """Return the topic of one source's changes (ASCII, well under 100 characters)."""
    return f"catalog.source.{uuid.UUID(str(source_id)).hex}"


def source_changed_message(event: SourceEvent) -> dict[str, object]:
    """Return the small message that announces a committed change (ids, not instances)."""
    return {
        "type": SOURCE_CHANGED,
        "event_id": event.id,
        "source_id": str(event.source_id),
        "kind": event.kind,
        "version": event.version,
    }


def publish_source_event(event: SourceEvent) -> None:
    """Announce a committed change to everyone listening; call only after commit."""
    layer = get_channel_layer()
    if layer is None:
        return
    message = source_changed_message(event)
    send = async_to_sync(layer.group_send)
    send(SOURCES_TOPIC, message)
    send(source_topic(event.source_id), message)
