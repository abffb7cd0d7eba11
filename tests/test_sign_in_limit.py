"""Sign-in attempts are limited per username and per client address (django-axes), for the `login`
mutation and the admin alike, in state every process shares (the database)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from axes.models import AccessAttempt
from django.conf import settings
from django.test import AsyncClient
from django.utils import timezone

from tests.support.http import post_graphql
from tests.support.identities import make_user
from tests.support.services import needs_services, servers

pytestmark = pytest.mark.django_db(transaction=True)

LOGIN = (
    "mutation($u: String!, $p: String!) { login(username: $u, password: $p) {"
    " __typename ... on Viewer { username } ... on OperationInfo { messages { code message } } } }"
)
PASSWORD = "the-right-password"
LIMIT = settings.AXES_FAILURE_LIMIT  # 5
LOCKED = {
    "code": "too_many_attempts",
    "message": "Too many failed sign-ins for this username or from this address: try again in 15 minutes.",
}
WRONG = {"code": "invalid_credentials", "message": "Wrong username or password, or the account is inactive."}


class ClientAt(AsyncClient):
    """Django's async test client, its requests coming from `address`.

    An ASGI request's address is the scope's "client"; the test client's extras and defaults
    become headers, so the scope is set where the client builds it.
    """

    def __init__(self, address: str) -> None:
        super().__init__()
        self.address = address

    def _base_scope(self, **request: Any) -> dict[str, Any]:
        return {**super()._base_scope(**request), "client": [self.address, 50000]}


async def login(username: str, password: str, address: str = "127.0.0.1") -> dict[str, Any]:
    response = await ClientAt(address).post(
        "/graphql",
        json.dumps({"query": LOGIN, "variables": {"u": username, "p": password}}),
        content_type="application/json",
    )
    assert response.status_code == 200
    return response.json()["data"]["login"]


def refused(answer: dict[str, Any]) -> dict[str, str]:
    assert answer["__typename"] == "OperationInfo", answer
    [message] = answer["messages"]
    return message


@pytest.fixture
async def user() -> str:
    return (await sync_to_async(make_user)("reader", "limited", password=PASSWORD)).username


async def test_after_five_failures_a_username_is_refused_even_with_the_right_password(user: str) -> None:
    for _ in range(LIMIT - 1):
        assert refused(await login(user, "wrong")) == WRONG
    assert refused(await login(user, "wrong")) == LOCKED  # the fifth failure locks it out
    assert refused(await login(user, PASSWORD)) == LOCKED
    # From another address too: the username is locked out, not only the address.
    assert refused(await login(user, PASSWORD, address="10.0.0.2")) == LOCKED


async def test_after_five_failures_an_address_is_refused_whatever_the_username(user: str) -> None:
    for n in range(LIMIT - 1):
        assert refused(await login(f"nobody-{n}", "wrong")) == WRONG
    assert refused(await login("nobody-else", "wrong")) == LOCKED
    assert refused(await login(user, PASSWORD)) == LOCKED
    assert await login(user, PASSWORD, address="10.0.0.2") == {"__typename": "Viewer", "username": user}


async def test_the_limit_resets_after_the_cool_off_and_on_a_success(user: str) -> None:
    for _ in range(LIMIT - 1):
        await login(user, "wrong")
    assert (await login(user, PASSWORD))["__typename"] == "Viewer"  # a success starts the count again
    for _ in range(LIMIT - 1):
        await login(user, "wrong")
    assert (await login(user, PASSWORD))["__typename"] == "Viewer"

    for _ in range(LIMIT):
        await login(user, "wrong")
    assert refused(await login(user, PASSWORD)) == LOCKED
    # The cool-off passes (the failures are older than it): signing in works again.
    past = timezone.now() - settings.AXES_COOLOFF_TIME - dt.timedelta(seconds=1)
    await AccessAttempt.objects.all().aupdate(attempt_time=past)
    assert await login(user, PASSWORD) == {"__typename": "Viewer", "username": user}


async def test_the_admin_sign_in_shares_the_limit(user: str) -> None:
    client = AsyncClient()
    for _ in range(LIMIT - 1):
        response = await client.post("/admin/login/", {"username": user, "password": "wrong"})
        assert response.status_code == 200  # the form again, with its error
    assert refused(await login(user, "wrong")) == LOCKED  # the fifth, through the mutation
    response = await client.post("/admin/login/", {"username": user, "password": PASSWORD})
    assert response.status_code == 429


@needs_services
def test_two_processes_share_the_count(user: str, tmp_path: Path) -> None:
    with servers(2, tmp_path) as addresses:
        for n in range(LIMIT):  # three through one process, two through the other
            status, body = post_graphql(addresses[n % 2], LOGIN, {"u": user, "p": "wrong"})
            assert (status, refused(body["data"]["login"])) == (200, WRONG if n < LIMIT - 1 else LOCKED)
        for address in addresses:
            status, body = post_graphql(address, LOGIN, {"u": user, "p": PASSWORD})
            assert (status, refused(body["data"]["login"])) == (200, LOCKED)
