"""Receivers that tell open sockets to check their credentials again after a change."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model, user_logged_out
from django.contrib.auth.models import Group
from django.db import transaction
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.dispatch import receiver

from accounts.models import ApiToken
from catalog.topics import publish_access_changed

User = get_user_model()


def _tell_users(user_ids: Any, ended_session: str | None = None) -> None:
    # After commit, so that the sockets' check reads the change.
    user_ids = list(user_ids)
    transaction.on_commit(lambda: publish_access_changed(user_ids=user_ids, ended_session=ended_session), robust=True)


@receiver(post_save, sender=ApiToken)
@receiver(post_delete, sender=ApiToken)
def token_changed(sender: type[ApiToken], instance: ApiToken, **kwargs: Any) -> None:
    # Revoked, shortened or deleted: the sockets it opened must close.
    transaction.on_commit(lambda: publish_access_changed(token_ids=[instance.pk]), robust=True)


@receiver(post_save, sender=User)
@receiver(post_delete, sender=User)
def user_changed(sender: type, instance: Any, **kwargs: Any) -> None:
    # Deactivated, deleted, demoted, or a new password (which ends the user's sessions).
    if kwargs.get("created") or kwargs.get("update_fields") == frozenset({"last_login"}):
        return  # a new user has no sockets; signing in elsewhere changes nothing here
    _tell_users([instance.pk])


@receiver(m2m_changed, sender=User.groups.through)
@receiver(m2m_changed, sender=User.user_permissions.through)
def user_permissions_changed(
    sender: type, instance: Any, action: str, reverse: bool, pk_set: Any, **kwargs: Any
) -> None:
    if action not in {"post_add", "post_remove", "post_clear"}:
        return
    if not reverse:  # user.groups.remove(group): the user changed
        _tell_users([instance.pk])
    elif isinstance(instance, Group):  # group.user_set.remove(user): these users changed
        _tell_users(pk_set or instance.user_set.values_list("pk", flat=True))


@receiver(m2m_changed, sender=Group.permissions.through)
def group_permissions_changed(sender: type, instance: Any, action: str, reverse: bool, **kwargs: Any) -> None:
    if action in {"post_add", "post_remove", "post_clear"} and not reverse:
        _tell_users(instance.user_set.values_list("pk", flat=True))


@receiver(user_logged_out)
def user_signed_out(sender: type, request: Any, user: Any, **kwargs: Any) -> None:
    if user is not None:
        _tell_users([user.pk], ended_session=request.session.session_key)
