"""API token services: issue, revoke, and sign in with a bearer token."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from accounts.models import ApiToken

SECRET_PREFIX = "cat_"  # noqa: S105 (a marker that tells our tokens apart, not a secret)
_MAX_SECRET_LENGTH = 128


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    secret: str  # shown once, to whoever created the token; never stored


def digest(secret: str) -> str:
    """Return the stored form of a token's secret."""
    # The secrets are 256 random bits, so there is no dictionary to guess from: a fast hash
    # keeps them safe at rest, unlike passwords, and lets a request find its token by digest.
    return hashlib.sha256(secret.encode()).hexdigest()


@transaction.atomic
def token_create(*, user: AbstractBaseUser, name: str, expires_in: dt.timedelta | None = None) -> IssuedToken:
    """Issue a token for `user`; the secret in the result is the only copy there will be."""
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user,
        name=name,
        prefix=secret[: len(SECRET_PREFIX) + 4],
        digest=digest(secret),
        expires_at=timezone.now() + expires_in if expires_in is not None else None,
    )
    return IssuedToken(token=token, secret=secret)


def token_revoke(*, token: ApiToken) -> None:
    """Revoke `token`: it stops working at once, also on sockets already open with it."""
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])


class TokenRefused(Exception):  # noqa: N818 (a refusal, not a fault)
    """A bearer token that does not sign anyone in; the message says why."""


def token_authenticate(secret: str) -> ApiToken:
    """Return the token with this secret, its user loaded; raise TokenRefused unless usable."""
    token = None
    if secret.startswith(SECRET_PREFIX) and len(secret) <= _MAX_SECRET_LENGTH:  # else not ours: no query
        token = ApiToken.objects.select_related("user").filter(digest=digest(secret)).first()
    if problem := token_problem(token):
        raise TokenRefused(problem)
    return token


def token_problem(token: ApiToken | None, now: dt.datetime | None = None) -> str | None:
    """Return why `token` (None: no such token) signs nobody in at `now`, or None if it does."""
    if token is None:
        return "The API token is not valid."
    if token.revoked_at is not None:
        return "The API token has been revoked."
    if token.expires_at is not None and token.expires_at <= (now or timezone.now()):
        return "The API token has expired."
    if not token.user.is_active:
        return "The API token's user is inactive."
    return None


def bearer_authenticate(authorization: object) -> ApiToken:
    """Return the token of an `Authorization: Bearer <token>` value; raise TokenRefused unless usable."""
    scheme, _, secret = str(authorization).strip().partition(" ") if isinstance(authorization, str) else ("", "", "")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret or " " in secret:
        raise TokenRefused('The authorization must be "Bearer <token>".')
    return token_authenticate(secret)
