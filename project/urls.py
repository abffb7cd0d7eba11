"""HTTP routes; the WebSocket route to /graphql is in project/asgi.py."""

from __future__ import annotations

from django.contrib import admin
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from strawberry.django.views import AsyncGraphQLView

from graph.schema import schema

graphql_view = csrf_exempt(AsyncGraphQLView.as_view(schema=schema))

urlpatterns = [
    path("admin/", admin.site.urls),
    path("graphql", graphql_view),
    path("graphql/", graphql_view),
]
