"""What resolvers need from the request, for HTTP and WebSocket alike."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AnonymousUser
from strawberry.types import Info


def current_user(info: Info) -> Any:
    """Return the user the request or socket signed in as (AnonymousUser when nobody)."""
    request = info.context["request"]
    user = getattr(request, "user", None)  # Django's HttpRequest (session or bearer token)
    if user is None:  # the WebSocket consumer keeps the user it authenticated in its scope
        user = getattr(request, "scope", {}).get("user")
    return user if user is not None else AnonymousUser()


def over_websocket(info: Info) -> bool:
    """Return whether the operation arrived over a WebSocket rather than HTTP."""
    try:
        return info.context["ws"] is not None
    except (KeyError, AttributeError):
        return False


def actor_name(info: Info) -> str | None:
    """Return the signed-in user's username, or None when nobody is signed in."""
    user = current_user(info)
    return user.get_username() if user.is_authenticated else None
