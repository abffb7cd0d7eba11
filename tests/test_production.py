"""Production mode (DJANGO_DEBUG unset): secure settings, a clear stop without a secret, introspection switch."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.test import AsyncClient

from tests.support.http import graphql
from tests.support.processes import ROOT

INTROSPECTION = '{ __type(name: "Query") { name } }'


def manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run manage.py in production mode: only `env` on top of a clean environment."""
    clean = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "SECURE_", "ALLOWED_"))}
    return subprocess.run(
        [sys.executable, "manage.py", *args], env=clean | env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )


PRODUCTION = {
    "DJANGO_SECRET_KEY": "k3Xr9-production-like-secret-Vq8wLz2Nf7Tb4Jm6Hc1Pd5Sg0Ry",
    "ALLOWED_HOSTS": "catalog.example.com",
}


def test_the_deployment_check_reports_nothing() -> None:
    result = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert (result.returncode, result.stdout.strip()) == (0, "System check identified no issues (1 silenced)."), (
        result.stderr
    )


def test_production_mode_sends_cookies_and_pages_over_https_only() -> None:
    code = (
        "from django.conf import settings as s; print(s.DEBUG, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE,"
        " s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS, s.SECURE_CONTENT_TYPE_NOSNIFF, s.X_FRAME_OPTIONS)"
    )
    result = manage("shell", "--verbosity", "0", "-c", code, **PRODUCTION)
    assert result.stdout.split() == ["False", "True", "True", "True", "31536000", "True", "DENY"], result.stderr


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ALLOWED_HOSTS": "catalog.example.com"}, "DJANGO_SECRET_KEY is not set."),
        ({"DJANGO_SECRET_KEY": PRODUCTION["DJANGO_SECRET_KEY"]}, "ALLOWED_HOSTS is not set."),
    ],
)
def test_production_mode_will_not_start_without_what_it_needs(env: dict[str, str], message: str) -> None:
    result = manage("check", **env)
    assert result.returncode != 0
    assert f"django.core.exceptions.ImproperlyConfigured: {message}" in result.stderr


@pytest.mark.django_db
async def test_introspection_is_on_by_default() -> None:
    assert await graphql(INTROSPECTION, token=None) == {"data": {"__type": {"name": "Query"}}}


@pytest.mark.django_db
async def test_introspection_can_be_turned_off(settings: pytest.FixtureRequest) -> None:
    settings.GRAPHQL_INTROSPECTION = False
    result = await graphql(INTROSPECTION, client=AsyncClient(), token=None)
    assert result == {  # a request error (validation): no `data` at all
        "errors": [
            {
                "message": "GraphQL introspection has been disabled, but the requested query contained the field "
                "'__type'.",
                "locations": [{"line": 1, "column": 3}],
                "extensions": {"code": "invalid"},
            }
        ],
    }
