"""/healthz and /readyz: what a load balancer sees, with the services up and with them unreachable."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from typing import Any

import pytest
from django.test import AsyncClient

from tests.processes import free_port, listening, server_env


async def test_healthz_answers_while_the_process_runs() -> None:
    response = await AsyncClient().get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


@pytest.mark.django_db(transaction=True)
async def test_readyz_answers_ready_when_the_database_and_the_channel_layer_answer() -> None:
    response = await AsyncClient().get("/readyz")
    assert (response.status_code, response.json()) == (
        200,
        {"status": "ready", "failing": [], "checks": {"database": "ok", "channel_layer": "ok"}},
    )


def get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (our own loopback server)
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def test_readyz_names_the_services_a_process_cannot_reach(tmp_path: Any) -> None:
    closed_database, closed_redis, port = free_port(), free_port(), free_port()
    env = server_env(
        DJANGO_DEBUG="1",
        DATABASE_URL=f"postgres://postgres@127.0.0.1:{closed_database}/test",
        REDIS_URL=f"redis://127.0.0.1:{closed_redis}/0",
    )
    daphne = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "project.asgi:application"]
    with listening(daphne, port, env, tmp_path / "daphne.log"):
        assert get(f"http://127.0.0.1:{port}/healthz") == (200, {"status": "ok"})
        assert get(f"http://127.0.0.1:{port}/readyz") == (
            503,
            {
                "status": "unavailable",
                "failing": ["database", "channel_layer"],
                "checks": {
                    "database": "unreachable (OperationalError)",
                    "channel_layer": "unreachable (ConnectionError)",
                },
            },
        )
