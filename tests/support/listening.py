"""Who listens in this process: channel-layer group members, and the subscriptions that hear changes.

Every test that changes the catalog right after subscribing waits through `until_listening`,
so that how a subscription comes to hear changes can change in one place.
"""

from __future__ import annotations

from channels.layers import InMemoryChannelLayer, get_channel_layer
from channels_redis.pubsub import RedisPubSubChannelLayer

from graph.cohorts import live_members
from tests.support.polling import apoll_until
from tests.support.websocket import RECEIVE_TIMEOUT


async def group_size(group: str) -> int:
    """Return how many channels have joined `group` on the configured channel layer."""
    layer = get_channel_layer()
    if isinstance(layer, InMemoryChannelLayer):
        return len(layer.groups.get(group, {}))
    if isinstance(layer, RedisPubSubChannelLayer):  # this process's members, all the test has
        members = layer._get_layer().groups
        return len(members.get(layer._get_layer()._get_group_channel_name(group), ()))
    connection = layer.connection(layer.consistent_hash(group))
    return await connection.zcard(layer._group_key(group))


async def listening_subscriptions() -> int:
    """Return how many subscriptions in this process hear every change committed from now on."""
    # Each is a member of a cohort whose run listens to the process's change feed.
    return live_members()


async def until_listening(subscriptions: int = 1) -> None:
    """Wait until `subscriptions` subscriptions in this process listen for changes to the sources.

    `sourceEvents` sends nothing when it starts, so a test that changes the catalog right after
    subscribing must first know that the subscription listens, or the change may pass it by.
    """

    async def enough() -> bool:
        return await listening_subscriptions() >= subscriptions

    # Every 5 ms: a subscription starts listening within milliseconds, and tests wait for it often.
    await apoll_until(enough, f"{subscriptions} subscription(s) listening", within=RECEIVE_TIMEOUT, interval=0.005)
