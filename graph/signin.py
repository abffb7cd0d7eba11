"""Signing a socket in at connection_init, and telling whether its credentials still hold.

The consumer (graph.websocket) calls these in one thread hop each (database_sync_to_async).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.http.cookie import parse_cookie

from accounts.models import ApiToken
from accounts.sessions import session_user
from accounts.tokens import TokenRefused, bearer_authenticate, token_problem
from graph.permissions import VIEW_SOURCE, holds_now

NOT_SIGNED_IN = (
    "Sign in first: a session cookie, or an API token in the connection_init payload as "
    '{"authorization": "Bearer <token>"}.'
)


def handshake_session_key(scope: Mapping[str, Any]) -> str | None:
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


def session_sign_in(session_key: str | None) -> tuple[Any, bool]:
    """Return the user the session signs in (TokenRefused if none), and whether they may view sources."""
    user = session_user(session_key)
    if user is None:
        raise TokenRefused(NOT_SIGNED_IN)
    return user, holds_now(user, VIEW_SOURCE)


def token_sign_in(authorization: object) -> tuple[ApiToken, bool]:
    """Return the token the authorization names (TokenRefused unless usable), and whether its user may view sources."""
    token = bearer_authenticate(authorization)
    return token, holds_now(token.user, VIEW_SOURCE)


def standing(
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


def offered_credentials(params: Mapping[str, Any], scope: Mapping[str, Any]) -> object | None:
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
