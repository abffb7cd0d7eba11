"""HTTP routes; the WebSocket route to /graphql is in project/asgi.py."""

from __future__ import annotations

from django.contrib import admin
from django.urls import path

from graph.metrics import metrics_view
from graph.schema import schema
from graph.views import GraphQLView
from project.health import healthz, readyz

graphql_view = GraphQLView.as_view(schema=schema)

urlpatterns = [
    path("admin/", admin.site.urls),
    path("graphql", graphql_view),
    path("graphql/", graphql_view),
    path("healthz", healthz),
    path("readyz", readyz),
    path("metrics", metrics_view),
]
