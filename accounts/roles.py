"""The three roles people are given, as Django groups of model permissions."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group, Permission
from django.db import transaction
from django.db.models import Q

READERS = "Catalog readers"
EDITORS = "Catalog editors"
ADMINS = "Catalog admins"

_READ = ["catalog.view_source", "catalog.view_sourceevent"]
_EDIT = [*_READ, "catalog.add_source", "catalog.change_source"]
ROLE_PERMISSIONS: dict[str, list[str]] = {
    READERS: _READ,
    EDITORS: _EDIT,
    ADMINS: [
        *_EDIT,
        "catalog.delete_source",
        "accounts.view_apitoken",
        "accounts.change_apitoken",
        "accounts.view_metrics",
    ],
}


@transaction.atomic  # one commit: this runs after every migrate, and after every flush in the tests
def ensure_roles(**kwargs: Any) -> None:
    """Create the role groups, each with at least its permissions (after each migrate)."""
    wanted = {perm for perms in ROLE_PERMISSIONS.values() for perm in perms}
    lookup = Q()
    for perm in wanted:
        app_label, codename = perm.split(".")
        lookup |= Q(content_type__app_label=app_label, codename=codename)
    found = Permission.objects.filter(lookup).select_related("content_type")
    permissions = {f"{p.content_type.app_label}.{p.codename}": p for p in found}
    # add(), not set(): an administrator may have given a group more since.
    for name, perms in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(*(permissions[perm] for perm in perms))
