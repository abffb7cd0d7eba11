"""Request middleware for the catalog."""

from __future__ import annotations

from collections.abc import Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.contrib.auth.models import AnonymousUser
from django.db import OperationalError
from django.http import HttpRequest, HttpResponse

from catalog.actors import acting_as
from catalog.errors import database_unreachable


class ActorMiddleware:
    """Record changes made while serving a request (the admin, GraphQL) as the request's user."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if self.is_async:
            return self._acall(request)
        with acting_as(_username(request)):
            return self.get_response(request)

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        # The user is resolved lazily; reading it here must not block the event loop.
        try:
            user = await request.auser()
        except OperationalError as error:
            if not database_unreachable(error):
                raise
            # The session cannot be read: the view meets the same error and answers for it
            # (GraphQL: `unavailable`); Django's 500 page from here would say nothing.
            user = AnonymousUser()
        with acting_as(user.get_username() if user.is_authenticated else None):
            return await self.get_response(request)


def _username(request: HttpRequest) -> str | None:
    user = getattr(request, "user", None)
    return user.get_username() if user is not None and user.is_authenticated else None
