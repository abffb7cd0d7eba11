"""Work done once per event in this process, however many subscribers need its result."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

from graph.loops import PerLoop

T = TypeVar("T")

# Enough keys for every distinct (event, filters) pair of a burst of events; an evicted
# key costs one recomputation, never a wrong result.
MAX_KEYS = 1024

# Per event loop: a task belongs to the loop that created it.
_tasks: PerLoop[OrderedDict[Hashable, asyncio.Task[Any]]] = PerLoop(OrderedDict)


async def shared(key: Hashable, compute: Callable[[], Awaitable[T]]) -> T:
    """Return the result of `compute()`, computed once for everyone who asks with `key`.

    Written by hand: the libraries at hand cache finished values (functools, Django's cache),
    not work in progress; here the thousand subscribers woken by one event must wait for the
    single computation the first of them started.
    """
    tasks = _tasks()
    task = tasks.get(key)
    if task is None:
        task = asyncio.ensure_future(compute())
        tasks[key] = task
        task.add_done_callback(lambda done: _forget_failure(tasks, key, done))
        while len(tasks) > MAX_KEYS:
            tasks.popitem(last=False)
    # Shielded: one subscriber leaving must not cancel the work the others wait for.
    return await asyncio.shield(task)


def _forget_failure(tasks: OrderedDict[Hashable, asyncio.Task[Any]], key: Hashable, task: asyncio.Task[Any]) -> None:
    if (task.cancelled() or task.exception() is not None) and tasks.get(key) is task:
        del tasks[key]  # the next subscriber to ask tries again
