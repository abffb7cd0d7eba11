"""Who listens in this process: the subscriptions that hear every change.

Every test that changes the catalog right after subscribing waits through `until_listening`,
so that how a subscription comes to hear changes can change in one place.
"""

from __future__ import annotations

from graph.cohorts import live_members
from tests.support.polling import apoll_until
from tests.support.websocket import RECEIVE_TIMEOUT


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
