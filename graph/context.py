"""What resolvers need from the request, for HTTP and WebSocket alike."""

from __future__ import annotations

from typing import Any

from strawberry.types import Info


def actor_name(info: Info) -> str | None:
    """Return the signed-in user's username, or None when nobody is signed in."""
    user = _user(info)
    return user.get_username() if user is not None and user.is_authenticated else None


def _user(info: Info) -> Any:
    request = info.context["request"]
    user = getattr(request, "user", None)  # Django's HttpRequest
    if user is None:  # the WebSocket consumer: AuthMiddlewareStack puts it in the scope
        user = getattr(request, "scope", {}).get("user")
    return user
