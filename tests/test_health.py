"""/healthz and /readyz: what a load balancer sees, with the services up and with them unreachable."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.test import AsyncClient

from tests.support.http import get
from tests.support.processes import free_port, server_env, serving


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


def test_readyz_names_the_services_a_process_cannot_reach(tmp_path: Path) -> None:
    closed_database, closed_redis = free_port(), free_port()
    env = server_env(
        DJANGO_DEBUG="1",
        DATABASE_URL=f"postgres://postgres@127.0.0.1:{closed_database}/test",
        REDIS_URL=f"redis://127.0.0.1:{closed_redis}/0",
    )
    with serving(env, tmp_path / "serve.log") as server:
        assert get(server.address, "/healthz") == (200, {"status": "ok"})
        assert get(server.address, "/readyz") == (
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
