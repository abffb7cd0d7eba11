"""GraphQL over WebSocket: the consumer that signs a socket in and keeps checking it may stay.

Close codes: 4400 malformed frame, 4401 operation before the acknowledgement, 4403 no valid
credentials (also later, when they are revoked or expire), 4406 unknown subprotocol, 4408
no connection_init in time, 4409 an operation id already running, 4429 a second
connection_init, 1009 a message over GRAPHQL_MAX_REQUEST_BYTES, 4503 the database cannot be
reached to sign in, 4509 a client that reads too slowly (graph.outbox). The subprotocols'
rules are in graph.handlers, signing in in graph.signin.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections.abc import Mapping
from typing import Any

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from django.conf import settings
from django.db import OperationalError
from django.utils import timezone
from strawberry.channels import GraphQLWSConsumer
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL
from strawberry.types.unset import UNSET, UnsetType

from accounts.tokens import TokenRefused
from catalog.errors import database_unreachable
from graph.access import AccessWatch, access_watch
from graph.frames import frame_problem
from graph.handlers import BAD_REQUEST, FORBIDDEN, MESSAGE_TOO_BIG, LegacyWSHandler, TransportWSHandler
from graph.metrics import SOCKETS
from graph.outbox import SLOW_CLIENT, SLOW_CLIENT_REASON, Outbox, send_buffer
from graph.permissions import LIVE_PERMISSIONS, holds_now
from graph.signin import handshake_session_key, offered_credentials, session_sign_in, standing, token_sign_in

logger = logging.getLogger(__name__)


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
        authorization = offered_credentials(context.get("connection_params") or {}, self.scope)
        try:
            if authorization is not None:
                token, self._could_view = await database_sync_to_async(token_sign_in)(authorization)
                user = token.user
            else:
                token = None
                self._session_key = handshake_session_key(self.scope)
                user, self._could_view = await database_sync_to_async(session_sign_in)(self._session_key)
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
        problem, user, expires_at = await database_sync_to_async(standing)(
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
