"""Wait until a condition holds, with a deadline: for conditions that nothing announces."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

# A guard against a hung test on a loaded machine (two CPUs, shared), never a condition a test waits for.
DEADLINE = 30


def poll_until(condition: Callable[[], T], what: str, *, within: float = DEADLINE, interval: float = 0.05) -> T:
    """Call `condition` until it returns a true value, and return that value.

    Fail with `what` in the message once `within` seconds have passed. `condition` may raise
    to fail at once (a process it waits for has exited, say).
    """
    deadline = time.monotonic() + within
    while not (value := condition()):
        assert time.monotonic() < deadline, f"not within {within} s: {what}"
        time.sleep(interval)  # polling the condition above, with a deadline
    return value


async def apoll_until(
    condition: Callable[[], T | Awaitable[T]],
    what: str,
    *,
    within: float = DEADLINE,
    interval: float = 0.05,
    wake: asyncio.Event | None = None,
) -> T:
    """Call (and await, if it is a coroutine function) `condition` until it returns a true value; return it.

    `wake`, when given, is set whenever the condition may have changed (a frame arrived): the
    condition is checked again at once then, not only every `interval` seconds.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        if wake is not None:
            wake.clear()  # before the check: a change during it sets the event again
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        remaining = deadline - loop.time()
        assert remaining > 0, f"not within {within} s: {what}"
        if wake is None:
            await asyncio.sleep(min(interval, remaining))  # polling the condition above, with a deadline
        else:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(interval, remaining)):
                    await wake.wait()
