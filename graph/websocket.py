"""GraphQL over WebSocket: sign-in at connection_init, and one set of rules for both subprotocols.

Close codes: 4400 malformed frame, 4401 operation before the acknowledgement, 4403 no valid
credentials (also later, when they are revoked or expire), 4406 unknown subprotocol, 4408
no connection_init in time, 4409 an operation id already running, 4429 a second
connection_init, 1009 a message over GRAPHQL_MAX_REQUEST_BYTES, 4509 a client that reads too
slowly (graph.outbox).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import json
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from django.conf import settings
from django.db import OperationalError
from django.http.cookie import parse_cookie
from django.utils import timezone
from graphql import GraphQLError
from strawberry.channels import GraphQLWSConsumer
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
    _OperationStreamClosed,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.types.execution import PreExecutionError
from strawberry.types.unset import UNSET, UnsetType

from accounts.models import ApiToken
from accounts.sessions import session_user
from accounts.tokens import TokenRefused, bearer_authenticate, token_problem
from catalog.errors import ErrorCode, database_unreachable
from graph import cohorts, documents, resume
from graph.access import AccessWatch, access_watch
from graph.errors import UNAVAILABLE_MESSAGE
from graph.frames import frame_problem
from graph.metrics import SOCKETS, SUBSCRIPTIONS
from graph.outbox import SLOW_CLIENT, SLOW_CLIENT_REASON, Outbox, send_buffer
from graph.permissions import LIVE_PERMISSIONS, MEMBERS_HOLD, VIEW_SOURCE, holds_now

logger = logging.getLogger(__name__)

BAD_REQUEST = 4400
FORBIDDEN = 4403
MESSAGE_TOO_BIG = 1009  # RFC 6455
UNAVAILABLE = 4503  # like HTTP 503, as 4403 and 4429 mirror theirs; graphql-ws clients retry it
NOT_SIGNED_IN = (
    "Sign in first: a session cookie, or an API token in the connection_init payload as "
    '{"authorization": "Bearer <token>"}.'
)


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


def _sender(consumer: GraphQLConsumer, operation_id: str, field: str) -> Callable[[str], Awaitable[None]]:
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


class GraphQLConsumer(GraphQLWSConsumer):
    """Strawberry's Channels consumer that signs the socket in and keeps checking it may stay."""

    graphql_transport_ws_handler_class = TransportWSHandler
    graphql_ws_handler_class = LegacyWSHandler
    # No channel of its own: the process's change feed (graph.feed) and access watch
    # (graph.access) listen for all its sockets, which makes a socket cheap to open and keep.
    channel_layer_alias = None

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Read for each connection, not at start-up, so that it can be changed in tests.
        self.connection_init_wait_timeout = dt.timedelta(seconds=settings.GRAPHQL_CONNECTION_INIT_TIMEOUT)
        self.subprotocol: str | None = None
        self._closed = False
        self._counted = False  # in graph.metrics.SOCKETS
        self._refusal: str | None = None  # why sign-in was refused
        self._outbox: Outbox | None = None
        self._user_pk: Any = None
        self._token_id: int | None = None
        self._could_view = False
        self._session_key: str | None = None
        self._watch: AccessWatch | None = None
        self._expiry: asyncio.Task | None = None

    async def dispatch(self, message: Mapping[str, Any]) -> None:
        # Channels' dispatch first sends close_old_connections() to the thread that sync views
        # and mutations share, for every frame a client sends (pings included): a thread hop
        # per frame, with no query behind it. Here each database call of the consumer does that
        # check itself, in the hop it makes anyway (database_sync_to_async), and frames cost none.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def pick_websocket_subprotocol(self, request: GraphQLWSConsumer) -> str | None:
        # graphql-transport-ws whenever the client offers it, whatever its order (Strawberry
        # follows the client's): as graphql-ws's own server and PostGraphile do. gql offers the
        # legacy one first by default.
        offered = request.scope.get("subprotocols") or []
        preferred = (GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL)
        return next((protocol for protocol in preferred if protocol in offered), None)

    async def create_websocket_response(self, request: GraphQLWSConsumer, subprotocol: str | None) -> Any:
        self.subprotocol = subprotocol
        return await super().create_websocket_response(request, subprotocol)

    async def may_join_cohorts(self) -> bool:
        """Return whether the socket's user holds, now, what every member of a cohort must."""
        user = self.scope.get("user")
        if user is None:
            return False

        def holds() -> bool:
            return all(holds_now(user, permission) for permission in LIVE_PERMISSIONS)

        try:
            return await database_sync_to_async(holds)()
        except OperationalError as error:
            if not database_unreachable(error):
                raise
            return False  # run on its own, the operation reports the outage

    async def send_result(self, text: str, *, state_of: str | None = None, event: bool = False) -> None:
        """Send a frame built elsewhere (a cohort's result) through the socket's outbox (graph.outbox)."""
        if not self._closed and self._outbox is not None:
            await self._outbox.put(text, state_of=state_of, event=event)

    async def send(self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False) -> None:
        # Strawberry's own frames (acknowledgements, completions, errors) wait in the same line.
        if text_data is not None and not close and self._outbox is not None:
            await self._outbox.put(text_data)
        else:
            await super().send(text_data, bytes_data, close)

    async def _write(self, text: str) -> None:
        if not self._closed:
            await self.base_send({"type": "websocket.send", "text": text})

    async def _close_slow(self) -> None:
        await self.close(code=SLOW_CLIENT, reason=SLOW_CLIENT_REASON)

    def decode_json(self, data: str | bytes) -> object:
        return json.loads(data)  # already checked by frame_problem, nesting included

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self._closed:
            return  # frames still in flight after we closed
        limit = settings.GRAPHQL_MAX_REQUEST_BYTES
        if text_data is None:
            await self.close(code=BAD_REQUEST, reason="Messages must be text (JSON).")
        elif len(text_data) > limit or len(text_data.encode()) > limit:
            await self.close(code=MESSAGE_TOO_BIG, reason=f"A message may be at most {limit} bytes.")
        elif problem := frame_problem(text_data, self.subprotocol):
            await self.close(code=BAD_REQUEST, reason=problem)
        else:
            await super().receive(text_data=text_data)

    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        if not self._closed:
            self._closed = True
            if code == FORBIDDEN and self._refusal is not None:
                reason = self._refusal  # why, where Strawberry says only "Forbidden"
            await super().close(code=code, reason=reason)

    async def connect(self) -> None:
        SOCKETS.inc()
        self._counted = True
        limit = settings.WEBSOCKET_SEND_BUFFER_BYTES
        self._outbox = Outbox(self._write, self._close_slow, send_buffer(self.scope), limit)
        await super().connect()

    async def disconnect(self, code: int) -> None:
        if self._counted:
            self._counted = False
            SOCKETS.dec()
        try:
            await super().disconnect(code)  # waits for the handler: sign-in has finished by then
        finally:
            if self._outbox is not None:
                self._outbox.discard()
            if self._expiry is not None:
                self._expiry.cancel()
            if self._watch is not None:
                self._watch.discard(self)

    # --- Signing in, and staying signed in

    async def on_ws_connect(self, context: dict[str, Any]) -> UnsetType:
        authorization = _authorization(context.get("connection_params") or {}, self.scope)
        try:
            if authorization is not None:
                token, self._could_view = await database_sync_to_async(_token_sign_in)(authorization)
                user = token.user
            else:
                token = None
                self._session_key = _session_key(self.scope)
                user, self._could_view = await database_sync_to_async(_session_sign_in)(self._session_key)
        except TokenRefused as refusal:
            self._refusal = str(refusal)
            raise ConnectionRejectionError({"message": self._refusal}) from None
        self.scope["user"] = user
        self._user_pk = user.pk
        self._token_id = token.pk if token is not None else None
        self._watch = access_watch()
        await self._watch.add(self, user.pk, self._token_id)
        # Once more now that the socket is watched: a revocation committed in between is not missed.
        if problem := await self._access_problem():
            self._refusal = problem
            raise ConnectionRejectionError({"message": problem})
        return UNSET

    async def check_access(self, ended_session: str | None = None) -> None:
        """Check the socket's credentials again (graph.access asks); close with 4403 if they are gone."""
        try:
            problem = await self._access_problem(ended_session)
        except Exception:  # the database is away: keep serving, the next check will tell
            logger.warning("Could not check a socket's credentials again", exc_info=True)
            return
        if problem is not None:
            await self.close(code=FORBIDDEN, reason=problem)

    async def _access_problem(self, ended_session: str | None = None) -> str | None:
        """Return why the socket may no longer stay open, or None; keep its user up to date."""
        session_key = self._session_key if self._token_id is None else None
        ended = self._token_id is None and ended_session == session_key  # announced before the store forgets it
        problem, user, expires_at = await database_sync_to_async(_standing)(
            self._token_id, None if ended else session_key, self._user_pk, self._could_view
        )
        if problem is None:
            self._close_at(expires_at)
            self.scope["user"] = user  # demoted or promoted: the next operation sees it
        return problem

    def _close_at(self, expires_at: dt.datetime | None) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        self._expiry = asyncio.create_task(self._expire(expires_at)) if expires_at is not None else None

    async def _expire(self, expires_at: dt.datetime) -> None:
        # A deadline, not a poll: the token stops working at that instant and so does the socket.
        await asyncio.sleep(max(0.0, (expires_at - timezone.now()).total_seconds()))
        await self.close(code=FORBIDDEN, reason="The API token has expired.")


def _session_key(scope: Mapping[str, Any]) -> str | None:
    """Return the session key in the handshake's cookies, if any.

    Read here rather than by channels' session and auth middleware, which would load a session
    and a user for every socket, token ones included, and wrap every frame sent.
    """
    for name, value in scope.get("headers", ()):
        if name == b"cookie":
            key = parse_cookie(value.decode("latin1")).get(settings.SESSION_COOKIE_NAME)
            if key:
                return key
    return None


def _session_sign_in(session_key: str | None) -> tuple[Any, bool]:
    """Return the user the session signs in (TokenRefused if none), and whether they may view sources."""
    user = session_user(session_key)
    if user is None:
        raise TokenRefused(NOT_SIGNED_IN)
    return user, holds_now(user, VIEW_SOURCE)


def _token_sign_in(authorization: object) -> tuple[ApiToken, bool]:
    """Return the token the authorization names (TokenRefused unless usable), and whether its user may view sources."""
    token = bearer_authenticate(authorization)
    return token, holds_now(token.user, VIEW_SOURCE)


def _standing(
    token_id: int | None, session_key: str | None, user_pk: Any, could_view: bool
) -> tuple[str | None, Any, dt.datetime | None]:
    """Return why a socket's credentials no longer hold (or None), its user as stored, and its token's expiry.

    A token socket stands by its token (its user read with it), a session socket by its session;
    a socket that could view sources when it opened must still be able to: its running
    subscriptions would go on streaming what its user may no longer read.
    """
    if token_id is not None:
        token = ApiToken.objects.select_related("user").filter(pk=token_id).first()
        if problem := token_problem(token):
            return problem, None, None
        user, expires_at = token.user, token.expires_at
    else:
        user, expires_at = session_user(session_key, user_pk), None
        if user is None:
            return "The session has ended.", None, None
    if could_view and not holds_now(user, VIEW_SOURCE):
        return f"Missing permission {VIEW_SOURCE}.", None, None
    return None, user, expires_at


def _authorization(params: Mapping[str, Any], scope: Mapping[str, Any]) -> object | None:
    """Return the credentials the client sent, in the order of preference, or None."""
    if "authorization" in params:
        return params["authorization"]
    headers = params.get("headers")
    if isinstance(headers, Mapping):
        for name, value in headers.items():
            if isinstance(name, str) and name.lower() == "authorization":
                return value
    for name, value in scope.get("headers", ()):
        if name == b"authorization":  # non-browser clients may also set it on the handshake
            return value.decode("latin1")
    return None
