"""Django model permissions, checked before a resolver reads or writes anything."""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from strawberry.types import Info

from catalog.errors import ErrorCode
from graph.context import current_user, over_websocket

VIEW_SOURCE = "catalog.view_source"
ADD_SOURCE = "catalog.add_source"
CHANGE_SOURCE = "catalog.change_source"
DELETE_SOURCE = "catalog.delete_source"


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
    if not (holds_now(user, permission) if over_websocket(info) else user.has_perm(permission)):
        raise MissingPermission(permission)


def holds_now(user: Any, permission: str) -> bool:
    """Return whether `user` has `permission`, read afresh, in one query (a socket keeps its user for hours).

    What Django's User.has_perm answers with ModelBackend, the only backend configured: an
    active superuser has every permission; another active user has those given to them or to
    one of their groups. Written as one query because every subscribe and every operation on a
    socket asks it; has_perm after refresh_from_db costs three (tests/test_permissions.py
    compares the two).
    """
    if not user.is_authenticated:
        return False
    app_label, codename = permission.split(".", 1)
    granted = (
        Q(is_superuser=True)
        | Q(user_permissions__codename=codename, user_permissions__content_type__app_label=app_label)
        | Q(groups__permissions__codename=codename, groups__permissions__content_type__app_label=app_label)
    )
    return get_user_model()._default_manager.filter(granted, pk=user.pk, is_active=True).exists()


def _members_hold(info: Info) -> frozenset[str]:
    try:
        return info.context[MEMBERS_HOLD]
    except (KeyError, TypeError, AttributeError):  # a request's context, not a cohort's
        return frozenset()


async def arequire(info: Info, permission: str) -> None:
    """Raise MissingPermission unless the user has `permission` (async resolvers)."""
    await sync_to_async(require)(info, permission)
