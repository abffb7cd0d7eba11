"""How a live result is executed for each change: in the live-reads thread, forgetting as it goes."""

from __future__ import annotations

from typing import Any

from graphql.execution import Executor
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from graph.worker import in_worker


class LiveExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's execution context, with two changes for subscription events.

    Memory: graphql-core 3.3.2 (Executor.build_per_event_executor) makes each event's executor
    a shallow copy that shares the subscription's `_relevant_sub_fields` cache, keyed by the
    id() of a field list that is new for every event: it never hits, and it keeps every
    event's entries (and their lists) until the subscription ends, ~2-3 KiB per result. Each
    event's executor gets a cache of its own instead, dropped with it.
    (tests/test_memory.py fails if the growth returns.)

    Threads: the event's fields are resolved in the live-reads thread (graph.worker), as plain
    synchronous code. In the event loop, strawberry-django would resolve each model property
    (deliveryStatus, nextStatus, an event's source) through sync_to_async, in the thread every
    sync view and mutation of the process shares: a change would make writers wait.
    """

    _per_event = False

    def build_per_event_executor(self, payload: Any) -> Executor:
        executor = super().build_per_event_executor(payload)
        executor._relevant_sub_fields = {}
        executor._per_event = True
        return executor

    def execute_operation(self, serially: bool | None = None) -> Any:
        if not self._per_event:
            return super().execute_operation(serially)
        return self._execute_in_worker(serially)

    async def _execute_in_worker(self, serially: bool | None) -> Any:
        result = await in_worker(super().execute_operation, serially)
        # A field with an async resolver leaves work for the event loop: finish it here.
        return await result if self.is_awaitable(result) else result
