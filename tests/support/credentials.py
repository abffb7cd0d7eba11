"""Which bearer token a test client sends when the test does not say: a new admin's.

Importable without Django, like the WebSocket client, so that client processes without it
(the fan-out benchmark's) can use the client with a token of their own.
"""

from __future__ import annotations

# The default `token` of the test clients: the secret of a new API token of a new user in the
# admin role, issued on the tests' database when the client signs in.
ADMIN = "admin"


async def secret(token: str) -> str:
    """Return `token`, or for ADMIN the secret of a new token of a new user in the admin role."""
    if token != ADMIN:
        return token
    # Imported here: it needs Django set up, which only a test process that issues tokens has.
    from tests.support.identities import atoken

    return await atoken("admin")
