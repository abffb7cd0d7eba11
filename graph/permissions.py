"""Django model permissions, checked before a resolver reads or writes anything."""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.core.exceptions import PermissionDenied
from strawberry.types import Info

from catalog.errors import ErrorCode
from graph.context import current_user, over_websocket

VIEW_SOURCE = "catalog.view_source"
ADD_SOURCE = "catalog.add_source"
CHANGE_SOURCE = "catalog.change_source"
DELETE_SOURCE = "catalog.delete_source"

# ModelBackend caches a user's permissions on the user object; a socket keeps its user for
# hours, so each check there reads the user and its permissions afresh (a permission taken
# away, or a superuser demoted, applies to the next operation).
_PERMISSION_CACHES = ("_perm_cache", "_user_perm_cache", "_group_perm_cache")


class MissingPermission(PermissionDenied):
    """The signed-in user (or nobody) lacks `permission`.

    A PermissionDenied, so that strawberry-django turns it into an OperationInfo of kind
    PERMISSION in mutations; graph.errors turns it into a coded error elsewhere.
    """

    code = ErrorCode.PERMISSION_DENIED.value

    def __init__(self, permission: str) -> None:
        self.permission = permission
        super().__init__(f"Missing permission {permission}.")


# In the context of a cohort's run (graph.cohorts), the permissions that every member's
# socket was checked for when it joined: one run serves many sockets, none of them its own.
MEMBERS_HOLD = "members_hold"
# What a socket must hold to join a cohort: every subscription field needs it.
LIVE_PERMISSIONS = frozenset({VIEW_SOURCE})


def require(info: Info, permission: str) -> None:
    """Raise MissingPermission unless the user has `permission` (sync resolvers)."""
    if permission in _members_hold(info):
        return
    user = current_user(info)
    if not (has_permission_now(user, permission) if over_websocket(info) else user.has_perm(permission)):
        raise MissingPermission(permission)


def has_permission_now(user: Any, permission: str) -> bool:
    """Return whether `user` has `permission`, read afresh (a socket keeps its user for hours)."""
    if user.is_authenticated:
        user.refresh_from_db(fields=["is_active", "is_superuser"])
        for cache in _PERMISSION_CACHES:
            user.__dict__.pop(cache, None)
    return user.has_perm(permission)


def _members_hold(info: Info) -> frozenset[str]:
    try:
        return info.context[MEMBERS_HOLD]
    except (KeyError, TypeError, AttributeError):  # a request's context, not a cohort's
        return frozenset()


async def arequire(info: Info, permission: str) -> None:
    """Raise MissingPermission unless the user has `permission` (async resolvers)."""
    await sync_to_async(require)(info, permission)
