"""The service as `make run` starts it (scripts/serve: demo data, demo / demo), with a token of demo."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.http import post_graphql
from tests.support.processes import SCRIPTS_SERVE, manage, server_env, serving


@dataclass(frozen=True)
class DemoServer:
    """scripts/serve on a port of its own, and an API token of demo."""

    address: str  # 127.0.0.1:port
    token: str
    log: Path

    @property
    def origin(self) -> str:
        return f"http://{self.address}"

    def post(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """POST an operation with the token, as an integrator would, and return the body."""
        status, body = post_graphql(self.address, query, variables, token=self.token)
        assert status == 200, body
        return body


@contextmanager
def demo_server(folder: Path, token_name: str) -> Iterator[DemoServer]:
    """Run scripts/serve on a free port with a fresh SQLite file in `folder`; issue a token of demo."""
    env = server_env(PYTHON=sys.executable, SQLITE_PATH=str(folder / "db"))
    with serving(env, folder / "serve.log", program=SCRIPTS_SERVE) as server:
        token = manage(env | {"DJANGO_DEBUG": "1"}, "create_api_token", "demo", "--name", token_name)
        yield DemoServer(address=server.address, token=token, log=server.log)
