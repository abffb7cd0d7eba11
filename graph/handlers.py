"""The two subprotocols' handlers: one set of rules for both, and subscriptions served from cohorts.

Strawberry's handlers, held to the letter of graphql-transport-ws and to the same rules on the
legacy graphql-ws: a subscription is served from its cohort (graph.cohorts), resuming after a
cursor first when it asks (graph.resume); anything else runs on its own, as Strawberry runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from django.db import OperationalError
from graphql import GraphQLError
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
    _OperationStreamClosed,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.types.execution import PreExecutionError

from catalog.errors import ErrorCode, database_unreachable
from graph import cohorts, documents, resume
from graph.errors import UNAVAILABLE_MESSAGE
from graph.metrics import SUBSCRIPTIONS
from graph.permissions import LIVE_PERMISSIONS, MEMBERS_HOLD

BAD_REQUEST = 4400
FORBIDDEN = 4403
MESSAGE_TOO_BIG = 1009  # RFC 6455
UNAVAILABLE = 4503  # like HTTP 503, as 4403 and 4429 mirror theirs; graphql-ws clients retry it


def _limit_error(limit: int | None) -> GraphQLError:
    return GraphQLError(
        f"At most {limit} operations may run at once on one connection.",
        extensions={"code": ErrorCode.LIMIT_EXCEEDED.value},
    )


class TransportWSHandler(BaseGraphQLTransportWSHandler):
    """graphql-transport-ws as Strawberry speaks it, closer to the letter of the protocol.

    A subscription is served from its cohort (graph.cohorts), by operation id.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.members: dict[str, cohorts.Member] = {}

    async def handle_connection_init(self, message: Any) -> None:
        # The protocol allows `"payload": null`; Strawberry would close with 4400 for it.
        try:
            await super().handle_connection_init({**message, "payload": message.get("payload") or {}})
        except OperationalError as error:  # the credentials cannot be checked; else the socket hangs
            if not database_unreachable(error):
                raise
            await self.websocket.close(code=UNAVAILABLE, reason=UNAVAILABLE_MESSAGE)

    async def handle_subscribe(self, message: Any) -> None:
        limit = self.max_subscriptions_per_connection
        if (
            self.connection_acknowledged
            and message["id"] not in self.operations
            and limit is not None
            and len(self.operations) >= limit
        ):
            # Strawberry's own answer has no error code.
            await self.send_message({"id": message["id"], "type": "error", "payload": [_limit_error(limit).formatted]})
            return
        await super().handle_subscribe(message)

    async def run_operation(self, operation: Operation) -> None:
        field = documents.subscription_field(operation.query, operation.operation_name)
        if field is None:
            await super().run_operation(operation)  # answered on its own, as Strawberry does
            return
        with _running(field):
            await self._run_subscription(operation, field)

    async def _run_subscription(self, operation: Operation, field: str) -> None:
        consumer = self.websocket.ws_consumer
        resuming = resume.plan(operation.query, operation.operation_name, operation.variables)
        if resuming == resume.ALONE or not await consumer.may_join_cohorts():
            await super().run_operation(operation)  # answered on its own, as Strawberry does
            return
        member = cohorts.Member(frame_head(operation.id, "next"), _sender(consumer, operation.id, field), field)
        self.members[operation.id] = member
        try:
            failure = await _serve(
                self.schema, operation.query, operation.operation_name, operation.variables, member, resuming
            )
            if failure is not None:
                await self._handle_pre_execution_error(operation, failure)
            await operation.send_operation_message({"id": operation.id, "type": "complete"})
        except _OperationStreamClosed:
            return
        except Exception as error:  # as Strawberry's run_operation: logged, and the operation completes
            await self.handle_task_exception(error)
            await operation.send_operation_message({"id": operation.id, "type": "complete"})
            self.operations.pop(operation.id, None)
        finally:
            self.members.pop(operation.id, None)

    async def cleanup_operation(self, operation_id: str) -> None:
        _stop(self.members, operation_id)  # not one more frame for it, from now on
        await super().cleanup_operation(operation_id)


class LegacyWSHandler(BaseGraphQLWSHandler):
    """The legacy graphql-ws subprotocol, held to the rules of graphql-transport-ws.

    Strawberry's handler has no connection_init deadline, accepts a second connection_init,
    replaces an operation whose id is reused, and closes with 1011 when sign-in fails.
    """

    init_received = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.members: dict[str, cohorts.Member] = {}

    async def handle(self) -> None:
        deadline = asyncio.create_task(self._close_unless_initialised())
        try:
            await super().handle()
        finally:
            deadline.cancel()

    async def _close_unless_initialised(self) -> None:
        await asyncio.sleep(self.view.connection_init_wait_timeout.total_seconds())
        if not self.init_received:
            await self.websocket.close(code=4408, reason="Connection initialisation timeout")

    async def handle_connection_init(self, message: Any) -> None:
        if self.init_received:
            await self.websocket.close(code=4429, reason="Too many initialisation requests")
            return
        self.init_received = True
        self.context["connection_params"] = message.get("payload") or {}
        try:
            await self.view.on_ws_connect(self.context)
        except ConnectionRejectionError as rejection:
            # The legacy protocol's way to say why, then the same close as the modern one.
            await self.send_message({"type": "connection_error", "payload": rejection.payload})
            await self.websocket.close(code=FORBIDDEN, reason=rejection.payload.get("message") or "Forbidden")
            return
        except OperationalError as error:
            if not database_unreachable(error):
                raise
            payload = {"message": UNAVAILABLE_MESSAGE, "extensions": {"code": ErrorCode.UNAVAILABLE.value}}
            await self.send_message({"type": "connection_error", "payload": payload})
            await self.websocket.close(code=UNAVAILABLE, reason=UNAVAILABLE_MESSAGE)
            return
        await self.send_message({"type": "connection_ack"})
        self.connection_acknowledged = True
        if self.keep_alive:
            self.keep_alive_task = asyncio.create_task(self.handle_keep_alive())

    async def handle_start(self, message: Any) -> None:
        operation_id = message["id"]
        if self.connection_acknowledged and operation_id in self.tasks:
            await self.websocket.close(code=4409, reason=f"Subscriber for {operation_id} already exists")
            return
        limit = self.max_subscriptions_per_connection
        if self.connection_acknowledged and limit is not None and len(self.tasks) >= limit:
            await self.send_message({"type": "error", "id": operation_id, "payload": _limit_error(limit).formatted})
            return
        await super().handle_start(message)

    async def handle_async_results(
        self, operation_id: str, query: str, operation_name: str | None, variables: dict[str, object] | None
    ) -> None:
        if problem := documents.ambiguity_of(query, operation_name):
            error = GraphQLError(problem, extensions={"code": ErrorCode.INVALID.value})
            await self.send_message({"type": "error", "id": operation_id, "payload": error.formatted})
            self.tasks.pop(operation_id, None)
            return
        field = documents.subscription_field(query, operation_name)
        if field is None:
            if documents.is_query_or_mutation(query, operation_name):
                await self._execute(operation_id, query, operation_name, variables)
            else:
                await super().handle_async_results(operation_id, query, operation_name, variables)
            return
        with _running(field):
            if not await self._served_from_cohort(operation_id, query, operation_name, variables, field):
                await super().handle_async_results(operation_id, query, operation_name, variables)

    async def _execute(
        self, operation_id: str, query: str, operation_name: str | None, variables: dict[str, object] | None
    ) -> None:
        """Run a query or a mutation: one `data` message, then `complete`.

        The legacy protocol (subscriptions-transport-ws) carries queries and mutations too;
        Strawberry's handler refuses them.
        """
        try:
            result = await self.schema.execute(
                query,
                variable_values=variables,
                context_value=self.context,
                root_value=self.root_value,
                operation_name=operation_name,
            )
            if isinstance(result, PreExecutionError):
                await self.send_message({"type": "error", "id": operation_id, "payload": result.errors[0].formatted})
                return
            await self.send_data_message(result, operation_id)
            await self.send_message({"type": "complete", "id": operation_id})
        except asyncio.CancelledError:  # stopped: as Strawberry's handler, say it is complete
            await self.send_message({"type": "complete", "id": operation_id})
        finally:
            self.tasks.pop(operation_id, None)

    async def _served_from_cohort(
        self,
        operation_id: str,
        query: str,
        operation_name: str | None,
        variables: dict[str, object] | None,
        field: str,
    ) -> bool:
        consumer = self.websocket.ws_consumer
        member = None
        try:
            resuming = resume.plan(query, operation_name, variables)
            if resuming == resume.ALONE or not await consumer.may_join_cohorts():
                return False
            member = cohorts.Member(frame_head(operation_id, "data"), _sender(consumer, operation_id, field), field)
            self.members[operation_id] = member
            failure = await _serve(self.schema, query, operation_name, variables, member, resuming)
            if failure is not None:
                payload = failure.errors[0].formatted
                await self.send_message({"type": "error", "id": operation_id, "payload": payload})
            else:
                await self.send_message({"type": "complete", "id": operation_id})
        except asyncio.CancelledError:  # stopped, even before it began: as Strawberry's handler, say it is complete
            await self.send_message({"type": "complete", "id": operation_id})
        finally:
            if member is not None:
                self.members.pop(operation_id, None)
                self.tasks.pop(operation_id, None)
        return True

    async def cleanup_operation(self, operation_id: str) -> None:
        _stop(self.members, operation_id)
        await super().cleanup_operation(operation_id)


def frame_head(operation_id: str, message_type: str) -> str:
    """Return a result frame of the operation up to its payload: the payload and "}" follow."""
    return f'{{"id":{json.dumps(operation_id)},"type":"{message_type}","payload":'


def _sender(consumer: Any, operation_id: str, field: str) -> Callable[[str], Awaitable[None]]:
    """Return how a cohort sends this operation's results: events may not wait; a state's newest may."""
    if field == documents.RESUMABLE_FIELD:
        return functools.partial(consumer.send_result, event=True)
    return functools.partial(consumer.send_result, state_of=operation_id)


@contextlib.contextmanager
def _running(field: str) -> Iterator[None]:
    """Count a subscription as running while the block runs (graph.metrics)."""
    running = SUBSCRIPTIONS.labels(field)
    running.inc()
    try:
        yield
    finally:
        running.dec()


async def _serve(
    schema: Any,
    query: str,
    operation_name: str | None,
    variables: dict[str, Any] | None,
    member: cohorts.Member,
    resuming: resume.Resume | None,
) -> Any:
    """Serve a subscription's member from its cohort, first replaying the log when it resumes."""
    if resuming is None:
        return await cohorts.serve(
            cohorts.operation_key(query, operation_name, variables),
            member,
            functools.partial(_run, schema, query, variables, operation_name),
        )
    shared = resuming.shared_variables
    return await cohorts.serve(
        cohorts.operation_key(query, operation_name, shared),
        member,
        functools.partial(_run, schema, query, shared, operation_name),
        functools.partial(resume.replay, schema, query, operation_name, resuming, member),
    )


async def _run(schema: Any, query: str, variables: dict[str, object] | None, operation_name: str | None) -> Any:
    """Start a cohort's run: the operation, in a context of its own (no socket's)."""
    context = {"request": None, "response": None, "ws": None, MEMBERS_HOLD: LIVE_PERMISSIONS}
    return await schema.subscribe(
        query, variable_values=variables, context_value=context, operation_name=operation_name
    )


def _stop(members: dict[str, cohorts.Member], operation_id: str) -> None:
    member = members.get(operation_id)
    if member is not None:
        member.stopped = True
