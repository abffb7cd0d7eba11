"""Every topic (channel-layer group) and event type, and the functions that publish to them."""

from __future__ import annotations

import uuid

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from catalog.models import SourceEvent

# Channel-layer message types; a consumer's listen_to_channel must use exactly these. The
# same change is sent with a different type to each kind of topic, because a consumer hands a
# message to every subscription listening for its type, whichever group it came through.
SOURCE_CHANGED = "catalog.source_changed"  # sent to SOURCES_TOPIC
WATCHED_SOURCE_CHANGED = "catalog.watched_source_changed"  # sent to source_topic(id)

# Every change to any source: live lists, the data library and the event stream listen here.
SOURCES_TOPIC = "catalog.sources"


def source_topic(source_id: uuid.UUID | str) -> str:
    """Return the topic of one source's changes (ASCII, well under 100 characters)."""
    return f"catalog.source.{uuid.UUID(str(source_id)).hex}"


def source_changed_message(event: SourceEvent, message_type: str = SOURCE_CHANGED) -> dict[str, object]:
    """Return the small message that announces a committed change (ids, not instances)."""
    return {
        "type": message_type,
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
    send = async_to_sync(layer.group_send)
    send(SOURCES_TOPIC, source_changed_message(event))
    send(source_topic(event.source_id), source_changed_message(event, WATCHED_SOURCE_CHANGED))


# --- Access: sockets listen for changes to the credentials they were opened with.
# Here too so that every group name of the service is built in this one module.
ACCESS_CHANGED = "access.changed"


def user_topic(user_id: int) -> str:
    """Return the topic of changes to one user's access (deactivation, password, sign-out)."""
    return f"access.user.{int(user_id)}"


def token_topic(token_id: int) -> str:
    """Return the topic of changes to one API token (revocation, expiry, deletion)."""
    return f"access.token.{int(token_id)}"


def publish_access_changed(topic: str, ended_session: str | None = None) -> None:
    """Ask the sockets on `topic` to check their credentials again; call only after commit.

    `ended_session`: the key of a session that has just signed out, which its sockets cannot
    tell from the session store yet (Django announces the sign-out before deleting it).
    """
    layer = get_channel_layer()
    if layer is not None:
        async_to_sync(layer.group_send)(topic, {"type": ACCESS_CHANGED, "ended_session": ended_session})
