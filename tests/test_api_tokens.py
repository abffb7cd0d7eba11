"""Issuing API tokens from the command line, and revoking them in the admin."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from accounts.models import ApiToken
from accounts.tokens import digest, token_authenticate, token_create
from tests.support.identities import make_user

pytestmark = pytest.mark.django_db


def create_api_token(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("create_api_token", *args, stdout=out, stderr=err)
    return out.getvalue().strip(), err.getvalue().strip()


def test_the_command_prints_the_token_once_and_stores_only_its_digest() -> None:
    user = make_user("reader", "integrator")
    secret, note = create_api_token("integrator", "--name", "nightly export")
    token = ApiToken.objects.get()
    assert (token.user, token.name, token.digest, token.expires_at) == (user, "nightly export", digest(secret), None)
    assert note == "Token 'nightly export' for integrator (never expires). Store it now; it cannot be shown again."
    assert token_authenticate(secret) == token


def test_the_command_sets_the_expiry() -> None:
    make_user("reader", "integrator")
    before = timezone.now()
    create_api_token("integrator", "--expires-in-days", "7")
    expires_at = ApiToken.objects.get().expires_at
    assert before + dt.timedelta(days=7) <= expires_at <= timezone.now() + dt.timedelta(days=7)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nobody"], "There is no user 'nobody'."),
        (["integrator", "--expires-in-days", "0"], "--expires-in-days must be from 1 to 3650."),
        (["integrator", "--expires-in-days", "99999999"], "--expires-in-days must be from 1 to 3650."),
        (["integrator", "--name", " "], "--name must be 1 to 100 characters."),
    ],
)
def test_the_command_refuses_bad_arguments(args: list[str], message: str) -> None:
    make_user("reader", "integrator")
    with pytest.raises(CommandError, match=f"^{message}$"):
        create_api_token(*args)
    assert not ApiToken.objects.exists()


def test_an_admin_revokes_tokens_from_the_admin_and_cannot_add_one_there() -> None:
    admin = make_user("admin", "boss")
    admin.is_staff = True
    admin.save()
    client = Client()
    client.force_login(admin)
    issued = token_create(user=make_user("reader"), name="leaked")

    listing = client.get("/admin/accounts/apitoken/")
    assert listing.status_code == 200
    assert issued.token.prefix in listing.content.decode()
    assert issued.secret not in listing.content.decode()
    assert client.get("/admin/accounts/apitoken/add/").status_code == 403

    response = client.post(
        "/admin/accounts/apitoken/", {"action": "revoke", "_selected_action": [issued.token.pk]}, follow=True
    )
    assert "Revoked 1 token(s)." in response.content.decode()
    issued.token.refresh_from_db()
    assert issued.token.revoked_at is not None
