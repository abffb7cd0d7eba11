"""Django model permissions, checked before a resolver reads or writes anything."""

from __future__ import annotations

import functools
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.db import connection
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

    What Django's User.has_perm answers with ModelBackend, the only backend that grants any
    (accounts.backends.SignInLimit only refuses sign-ins): an
    active superuser has every permission; another active user has those given to them or to
    one of their groups (tests/test_permissions.py compares the two). Written as one SQL
    statement, built once from the models' tables, because every socket's sign-in, subscribe
    and operation asks it: has_perm after refresh_from_db costs three queries, and the ORM
    would compile the same joins anew each time.
    """
    if not user.is_authenticated:
        return False
    app_label, codename = permission.split(".", 1)
    with connection.cursor() as cursor:
        cursor.execute(_holds_sql(), [user.pk, codename, app_label, codename, app_label])
        return cursor.fetchone() is not None


@functools.cache
def _holds_sql() -> str:
    user_model = get_user_model()
    q = connection.ops.quote_name
    users = q(user_model._meta.db_table)
    own = user_model.user_permissions.through._meta
    member = user_model.groups.through._meta
    granted = Group.permissions.through._meta
    permissions, content_types = q(Permission._meta.db_table), q(ContentType._meta.db_table)

    def column(meta: Any, model: type) -> str:
        return q(next(f.column for f in meta.fields if f.related_model is model))

    matching = "p.codename = %s AND ct.app_label = %s AND ct.id = p.content_type_id"
    return (
        f"SELECT 1 FROM {users} u WHERE u.id = %s AND u.is_active AND (u.is_superuser"  # noqa: S608 (names from the models)
        f" OR EXISTS (SELECT 1 FROM {q(own.db_table)} up, {permissions} p, {content_types} ct"
        f" WHERE up.{column(own, user_model)} = u.id AND p.id = up.{column(own, Permission)} AND {matching})"
        f" OR EXISTS (SELECT 1 FROM {q(member.db_table)} ug, {q(granted.db_table)} gp,"
        f" {permissions} p, {content_types} ct"
        f" WHERE ug.{column(member, user_model)} = u.id AND gp.{column(granted, Group)} = ug.{column(member, Group)}"
        f" AND p.id = gp.{column(granted, Permission)} AND {matching}))"
    )


def _members_hold(info: Info) -> frozenset[str]:
    try:
        return info.context[MEMBERS_HOLD]
    except (KeyError, TypeError, AttributeError):  # a request's context, not a cohort's
        return frozenset()


async def arequire(info: Info, permission: str) -> None:
    """Raise MissingPermission unless the user has `permission` (async resolvers)."""
    await sync_to_async(require)(info, permission)
