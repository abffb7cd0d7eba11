"""Signing in and out with a Django session (browsers), and who the request is signed in as."""

from __future__ import annotations

import strawberry
import strawberry_django
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import aauthenticate, alogin, alogout
from strawberry.types import Info

from catalog.errors import ErrorCode, operation_error
from graph.context import current_user, over_websocket
from graph.errors import invalid


@strawberry.type(name="Viewer", description="Who the request is signed in as, and what they may do.")
class ViewerType:
    username: str
    permissions: list[str] = strawberry.field(
        description='Django permissions held, sorted, such as "catalog.view_source".'
    )


def viewer_of(user: object) -> ViewerType | None:
    if not user.is_authenticated:
        return None
    return ViewerType(username=user.get_username(), permissions=sorted(user.get_all_permissions()))


@strawberry.type
class SessionQuery:
    @strawberry.field(description="The signed-in user; null when nobody is signed in.")
    async def viewer(self, info: Info) -> ViewerType | None:
        # In a thread: the session's user is loaded from the database when first read.
        return await sync_to_async(lambda: viewer_of(current_user(info)))()


@strawberry.type
class SessionMutation:
    @strawberry_django.mutation(
        description="Sign in with a username and password: the response sets the session and "
        "CSRF cookies (HTTP only; a WebSocket signs in at connection_init)."
    )
    async def login(self, info: Info, username: str, password: str) -> ViewerType:
        request = _http_request(info, "sign in")
        user = await aauthenticate(request, username=username, password=password)
        if getattr(request, "axes_locked_out", False):
            # Answered here, as GraphQL: django-axes' middleware would replace the answer.
            request.axes_locked_out = False
            minutes = round(settings.AXES_COOLOFF_TIME.total_seconds() / 60)
            raise operation_error(
                f"Too many failed sign-ins for this username or from this address: try again in {minutes} minutes.",
                ErrorCode.TOO_MANY_ATTEMPTS,
            )
        if user is None:
            raise operation_error(
                "Wrong username or password, or the account is inactive.", ErrorCode.INVALID_CREDENTIALS
            )
        await alogin(request, user)  # a new session key and CSRF token: no fixation
        return await sync_to_async(viewer_of)(user)

    @strawberry.mutation(description="Sign out: end the session (HTTP only). True when it has ended.")
    async def logout(self, info: Info) -> bool:
        if over_websocket(info):
            raise invalid(_OVER_HTTP.format(action="sign out"))
        await alogout(info.context["request"])
        return True


_OVER_HTTP = "Send the mutation to {action} over HTTP: sessions live in cookies."


def _http_request(info: Info, action: str) -> object:
    if over_websocket(info):
        raise operation_error(_OVER_HTTP.format(action=action), ErrorCode.INVALID)
    return info.context["request"]
