"""Whether a session a socket was opened with still signs its user in."""

from __future__ import annotations

from importlib import import_module

from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.utils.crypto import constant_time_compare


def session_user(session_key: str | None, user_pk: object = None) -> AbstractBaseUser | None:
    """Return the active user the stored session signs in (`user_pk`, if given), else None.

    Read afresh from the session store: the copy a socket loaded at its handshake still
    says "signed in" after a sign-out elsewhere, and a password change ends a session
    through the hash stored in it.
    """
    if not session_key:
        return None
    session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    signed_in = session.get(SESSION_KEY)
    if signed_in is None or (user_pk is not None and signed_in != str(user_pk)):
        return None
    user = get_user_model()._default_manager.filter(pk=signed_in, is_active=True).first()
    if user is None or not constant_time_compare(session.get(HASH_SESSION_KEY, ""), user.get_session_auth_hash()):
        return None
    return user
