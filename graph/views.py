"""GraphQL over HTTP: who is asking (bearer token or session), CSRF for sessions, body size; GraphiQL."""

from __future__ import annotations

import json
from typing import Any

from asgiref.sync import sync_to_async
from cross_web import HTTPException
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import OperationalError
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.template.loader import render_to_string
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt
from strawberry.django.views import AsyncGraphQLView
from strawberry.http.parse_content_type import parse_content_type
from strawberry.types.execution import PreExecutionError

from accounts.tokens import TokenRefused, bearer_authenticate
from catalog.errors import ErrorCode, database_unreachable
from graph.errors import UNAVAILABLE_MESSAGE


class _CsrfCheck(CsrfViewMiddleware):
    # Django's own CSRF check, asked for its verdict instead of its 403 page.
    def _reject(self, request: HttpRequest, reason: str) -> str:
        return reason


def error_response(status: int, code: ErrorCode, message: str, **headers: str) -> JsonResponse:
    """Return a GraphQL-shaped error body for a request refused before execution."""
    return JsonResponse(
        {"errors": [{"message": message, "extensions": {"code": code.value}}]}, status=status, headers=headers
    )


# Exempt from the middleware's blanket check: requests with a bearer token and anonymous
# ones carry no cookie authority to abuse, and only session-authenticated POSTs are checked,
# below.
@method_decorator(csrf_exempt, name="dispatch")
class GraphQLView(AsyncGraphQLView):
    """Strawberry's view, signing requests in with a bearer token or the session."""

    async def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        media_type = answer_media_type(request)
        response = await self._answer(request) if media_type is not None else _not_acceptable()
        return negotiated(response, media_type or JSON, request_error=getattr(request, REQUEST_ERROR, False))

    async def process_result(self, request: HttpRequest, result: Any) -> Any:
        answer = await super().process_result(request, result)
        if _is_request_error(result):
            # A request error (a document that does not parse or validate, variables that do
            # not fit): the operation never ran, so the answer has no `data` at all.
            answer.pop("data", None)
            setattr(request, REQUEST_ERROR, True)
        return answer

    async def _answer(self, request: HttpRequest) -> HttpResponseBase:
        try:
            refusal = await self._refusal(request)
        except OperationalError as error:  # who is asking (token, session) is in the database
            if not database_unreachable(error):
                raise
            # Refused before GraphQL runs, like a bad token (401): a real status, here that of
            # a service that will be back, with when to try again.
            return error_response(503, ErrorCode.UNAVAILABLE, UNAVAILABLE_MESSAGE, **{"Retry-After": "5"})
        if refusal is not None:
            return refusal
        try:
            return await self.run(request=request)
        except HTTPException as error:  # a body that is not JSON, a method other than GET/POST
            headers = {"Allow": "GET, POST"} if error.status_code == 405 else {}
            return error_response(error.status_code, ErrorCode.INVALID, error.reason, **headers)

    async def parse_http_body(self, request: Any) -> Any:
        # Strawberry answers 400 to a body of a media type it does not read; HTTP's answer is 415.
        if request.method == "POST":
            content_type, _ = parse_content_type(request.content_type or "")
            multipart = self.multipart_uploads_enabled and content_type == "multipart/form-data"
            if "application/json" not in content_type and not multipart:
                raise HTTPException(415, "Send the operation as JSON: Content-Type: application/json.")
        return await super().parse_http_body(request)

    async def render_graphql_ide(self, request: HttpRequest) -> HttpResponse:
        """Return GraphiQL built from the service's own static files.

        Strawberry's page loads its scripts from a public CDN, so it stays blank offline; this one
        (graph/templates/graph/graphiql.html) loads only files under STATIC_URL.
        """
        return HttpResponse(render_to_string("graph/graphiql.html"))

    def decode_json(self, data: str | bytes) -> object:
        try:
            return json.loads(data)
        except RecursionError:  # nested deeper than the parser's stack: not a request we serve
            raise json.JSONDecodeError("Nested too deeply", "", 0) from None

    async def _refusal(self, request: HttpRequest) -> HttpResponseBase | None:
        limit = settings.GRAPHQL_MAX_REQUEST_BYTES
        too_large = error_response(413, ErrorCode.LIMIT_EXCEEDED, f"The request body is over {limit} bytes.")
        try:
            if int(request.headers.get("Content-Length") or 0) > limit or len(request.body) > limit:
                return too_large
        except ValueError:
            return error_response(400, ErrorCode.INVALID, "The Content-Length header is not a number.")
        except RequestDataTooBig:
            return too_large

        authorization = request.headers.get("Authorization")
        if authorization is not None:
            return await self._sign_in_with_token(request, authorization)
        if request.method == "POST" and (await request.auser()).is_authenticated:
            reason = await sync_to_async(_csrf_failure)(request)
            if reason is not None:
                return error_response(
                    403,
                    ErrorCode.CSRF_FAILED,
                    f"CSRF check failed ({reason}). With a session, send the csrftoken cookie's value "
                    "in the X-CSRFToken header.",
                )
        return None

    async def _sign_in_with_token(self, request: HttpRequest, authorization: str) -> HttpResponseBase | None:
        try:
            token = await sync_to_async(bearer_authenticate)(authorization)
        except TokenRefused as refusal:
            return error_response(
                401, ErrorCode.UNAUTHENTICATED, str(refusal), **{"WWW-Authenticate": 'Bearer error="invalid_token"'}
            )
        user = token.user

        async def auser() -> Any:
            return user

        request.user, request.auser = user, auser
        return None


# GraphQL over HTTP: the spec's own media type, and the one every client accepts.
GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"
REQUEST_ERROR = "graphql_request_error"


def answer_media_type(request: HttpRequest) -> str | None:
    """Return the media type of the answer the client accepts, per the GraphQL-over-HTTP spec (None: neither).

    No Accept header, or one that takes anything (*/*), gets application/json, which every
    client reads; application/graphql-response+json when the client prefers it. A browser
    asking for a page gets GraphiQL.
    """
    accept = request.headers.get("Accept")
    if not accept or "text/html" in accept:
        return JSON
    return request.get_preferred_type([JSON, GRAPHQL_RESPONSE])


def negotiated(response: HttpResponseBase, media_type: str, *, request_error: bool) -> HttpResponseBase:
    """Return a JSON answer in the negotiated media type, with the status it calls for."""
    if not response.get("Content-Type", "").startswith(JSON):
        return response  # GraphiQL's page, a stream
    if media_type == GRAPHQL_RESPONSE:
        response["Content-Type"] = f"{GRAPHQL_RESPONSE}; charset=utf-8"
        if request_error and response.status_code == 200:
            response.status_code = 400  # with this media type, a request error is a 4xx
    else:
        response["Content-Type"] = f"{JSON}; charset=utf-8"
    return response


def _is_request_error(result: Any) -> bool:
    """Return whether the operation never ran: a document that does not parse or validate, or bad variables.

    Strawberry returns a PreExecutionError for the first two; graphql-core reports variables
    that do not fit with no data and errors that have no path (a field's error always has one).
    """
    if isinstance(result, PreExecutionError):
        return True
    return result.data is None and bool(result.errors) and all(error.path is None for error in result.errors)


def _not_acceptable() -> JsonResponse:
    message = f"The answer is {GRAPHQL_RESPONSE} or {JSON}: accept one of them."
    return error_response(406, ErrorCode.INVALID, message)


def _csrf_failure(request: HttpRequest) -> str | None:
    return _CsrfCheck(lambda request: None).process_view(request, None, (), {})
