"""Whether a session a socket was opened with still signs its user in."""

from __future__ import annotations

from importlib import import_module

from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.utils.crypto import constant_time_compare


def session_is_current(session_key: str | None, user_pk: object) -> bool:
    """Return whether the stored session still belongs to the active user `user_pk`.

    Read afresh from the session store: the copy a socket loaded at its handshake still
    says "signed in" after a sign-out elsewhere, and a password change ends a session
    through the hash stored in it.
    """
    if not session_key:
        return False
    session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    if session.get(SESSION_KEY) != str(user_pk):
        return False
    user = get_user_model()._default_manager.filter(pk=user_pk, is_active=True).first()
    return user is not None and constant_time_compare(session.get(HASH_SESSION_KEY, ""), user.get_session_auth_hash())
