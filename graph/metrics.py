"""What an operator sees: the realtime side's numbers, for Prometheus at /metrics.

Each process counts its own (prometheus_client's registry is per process): scrape every
process on its own address, as the README says. Reading them needs `accounts.view_metrics`,
through an API token (what a Prometheus scrape sends: `authorization: credentials`) or a
session, like the rest of the service.
"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.db import OperationalError
from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest

from accounts.tokens import TokenRefused, bearer_authenticate
from catalog.errors import ErrorCode, database_unreachable
from graph.errors import UNAVAILABLE_MESSAGE
from graph.permissions import holds_now
from graph.views import error_response

VIEW_METRICS = "accounts.view_metrics"

SOCKETS = Gauge("catalog_websocket_connections", "Open GraphQL WebSocket connections of this process.")
SUBSCRIPTIONS = Gauge(
    "catalog_subscriptions", "Subscriptions running on this process's sockets, by root field.", ["field"]
)
CHANGES = Counter("catalog_changes_total", "Committed changes this process's change feed handed to its subscriptions.")
LOG_READS = Counter(
    "catalog_changes_read_from_log_total",
    "Changes the feed read from the log because their announcement came late, out of order or never "
    "(another process published sooner, Redis restarting).",
)
RESULTS = Counter("catalog_results_sent_total", "Subscription results written to sockets, by root field.", ["field"])
DELIVERY_DELAY = Histogram(
    "catalog_delivery_delay_seconds",
    "From a change being logged to its result written to the last socket that shares it (one "
    "observation per change and distinct operation).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
COALESCED = Counter(
    "catalog_coalesced_changes_total",
    "Changes a live state (sources, source, dataLibrary) took in without a result of their own: they "
    "came while the previous result was computed or sent, and the next result reflects them.",
    ["field"],
)
SLOW_CLIENT_CLOSES = Counter(
    "catalog_slow_client_closes_total", "Sockets closed because they read their results slower than they came."
)


async def metrics_view(request: HttpRequest) -> HttpResponse:
    """Return this process's metrics in Prometheus' text format, to a user with accounts.view_metrics."""
    if request.method not in ("GET", "HEAD"):
        return error_response(405, ErrorCode.INVALID, "Use GET.", Allow="GET, HEAD")
    try:
        refusal = await _refusal(request)
    except OperationalError as error:  # who is asking is in the database
        if not database_unreachable(error):
            raise
        return error_response(503, ErrorCode.UNAVAILABLE, UNAVAILABLE_MESSAGE, **{"Retry-After": "5"})
    if refusal is not None:
        return refusal
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)


async def _refusal(request: HttpRequest) -> HttpResponse | None:
    authorization = request.headers.get("Authorization")
    if authorization is not None:
        try:
            user = (await sync_to_async(bearer_authenticate)(authorization)).user
        except TokenRefused as refusal:
            return error_response(
                401, ErrorCode.UNAUTHENTICATED, str(refusal), **{"WWW-Authenticate": 'Bearer error="invalid_token"'}
            )
    else:
        user = await request.auser()
        if not user.is_authenticated:
            message = "Sign in first: an API token (Authorization: Bearer <token>) or a session."
            return error_response(401, ErrorCode.UNAUTHENTICATED, message, **{"WWW-Authenticate": "Bearer"})
    if not await sync_to_async(holds_now)(user, VIEW_METRICS):
        return error_response(403, ErrorCode.PERMISSION_DENIED, f"Missing permission {VIEW_METRICS}.")
    return None
