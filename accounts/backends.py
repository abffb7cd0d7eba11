"""The authentication backends: django-axes' limit on sign-in attempts, then Django's own."""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from axes.backends import AxesStandaloneBackend


class SignInLimit(AxesStandaloneBackend):
    """django-axes' backend, refusing a locked-out username or address before any password is checked.

    With the async entry that Django 5.2's aauthenticate() calls on every backend: axes 8.3.1's
    backend has none (Django's BaseBackend would supply it; axes does not subclass it).
    """

    async def aauthenticate(self, request: Any, **credentials: Any) -> Any:
        return await sync_to_async(self.authenticate)(request, **credentials)
