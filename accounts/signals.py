"""Receivers that tell open sockets to check their credentials again after a change."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model, user_logged_out
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from accounts.models import ApiToken
from catalog.topics import publish_access_changed, token_topic, user_topic

User = get_user_model()


@receiver(post_save, sender=ApiToken)
@receiver(post_delete, sender=ApiToken)
def token_changed(sender: type[ApiToken], instance: ApiToken, **kwargs: Any) -> None:
    # A revoked, shortened or deleted token must close the sockets it opened; after commit,
    # so that their check reads the change.
    transaction.on_commit(lambda: publish_access_changed(token_topic(instance.pk)), robust=True)


@receiver(post_save, sender=User)
@receiver(post_delete, sender=User)
def user_changed(sender: type, instance: Any, **kwargs: Any) -> None:
    # Deactivated, deleted, or a new password (which ends the user's sessions).
    if kwargs.get("created") or kwargs.get("update_fields") == frozenset({"last_login"}):
        return  # a new user has no sockets; signing in elsewhere changes nothing here
    transaction.on_commit(lambda: publish_access_changed(user_topic(instance.pk)), robust=True)


@receiver(user_logged_out)
def user_signed_out(sender: type, request: Any, user: Any, **kwargs: Any) -> None:
    if user is not None:
        transaction.on_commit(lambda: publish_access_changed(user_topic(user.pk)), robust=True)
