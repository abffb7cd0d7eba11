"""The ASGI application: Django for HTTP, Strawberry's Channels consumer for GraphQL over WebSocket."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
# Set up Django (apps, models) before anything below imports a model.
django_application = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.urls import re_path  # noqa: E402

from graph.schema import schema  # noqa: E402
from graph.websocket import GraphQLConsumer  # noqa: E402

graphql_websocket = GraphQLConsumer.as_asgi(
    schema=schema,
    keep_alive=True,
    keep_alive_interval=15,
    max_subscriptions_per_connection=settings.GRAPHQL_MAX_OPERATIONS_PER_CONNECTION,
    # Same-origin pages and these only: any other page could open a socket with the
    # user's session cookie (browsers apply no CORS to WebSocket handshakes).
    allowed_origins=settings.ALLOWED_ORIGINS,
)

application = ProtocolTypeRouter(
    {
        "http": django_application,
        # No session or auth middleware: the consumer reads the session cookie itself, only for
        # a socket that signs in with it (see graph.signin.handshake_session_key).
        "websocket": URLRouter([re_path(r"^graphql/?$", graphql_websocket)]),
    }
)
