"""People for the tests: users in each role, and their API tokens."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from accounts.roles import ADMINS, EDITORS, READERS
from accounts.tokens import token_create

ROLES = {"reader": READERS, "editor": EDITORS, "admin": ADMINS}
PASSWORD = "correct horse battery staple"
_numbers = itertools.count(1)


def make_user(role: str | None, username: str | None = None, *, password: str | None = None) -> Any:
    """Create an active user in `role`'s group (None: in no group).

    Without a password unless asked: hashing one takes a good fraction of a second.
    """
    username = username or f"{role or 'nobody'}-{next(_numbers)}"
    user = get_user_model().objects.create_user(username=username, password=password)
    if role is not None:
        user.groups.add(Group.objects.get(name=ROLES[role]))
    return user


def issue_token(
    role: str | None = "admin", *, username: str | None = None, expires_in: dt.timedelta | None = None
) -> str:
    """Return the secret of a new token of a new user in `role`."""
    return token_create(user=make_user(role, username), name="tests", expires_in=expires_in).secret


atoken = sync_to_async(issue_token)
