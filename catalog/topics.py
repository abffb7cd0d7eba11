"""Every topic (channel-layer group) and event type, and the functions that publish to them."""

from __future__ import annotations

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
