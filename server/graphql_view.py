"""The GraphQL endpoint: Strawberry's ASGI view, with our body checks and JSON refusals."""

from __future__ import annotations

import logging
from contextvars import ContextVar
from http import HTTPStatus
from typing import Any

import orjson
from cross_web import AsyncHTTPRequestAdapter, HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData, process_result
from strawberry.http.base import BaseRequestProtocol
from strawberry.http.ides import GraphQL_IDE
from strawberry.schema.base import BaseSchema
from strawberry.types.execution import ExecutionResult, PreExecutionError

from appointments.persisted_documents import DocumentStore, PersistedQuery, PersistedQueryError
from flags.stages import Viewer
from schema.context import RequestContext
from schema.schema import ClinicSchema
from schema.trusted_documents import ManifestError, TrustedDocuments, load_trusted
from server import graphiql
from server.request_body import RequestRefusedError, check_content_encoding, decode_body
from server.request_state import request_state
from server.services import Services
from server.settings import Settings, SettingsError

logger = logging.getLogger("server")
current_request: ContextVar[Request] = ContextVar("current_request")
"""The request the view is answering (its services live on its app)."""


class ClinicGraphQL(GraphQL[RequestContext, None]):
    """Strawberry's view over HTTP, refusing what it cannot run with a JSON ``errors`` body.

    Every request the view will not run (its body fails server/request_body.py,
    or Strawberry refuses it: wrong method or content type, an unknown or missing
    operation name) is answered ``{"errors": [{"message", "extensions": {"code"}}]}``
    with its 4xx status. The code is ``INVALID_INPUT`` for a body whose content is
    at fault (with ``field`` when one string is), otherwise the HTTP status's name
    (``BAD_REQUEST``, ``UNSUPPORTED_MEDIA_TYPE``, ``METHOD_NOT_ALLOWED``...).
    """

    def __init__(
        self,
        schema: BaseSchema,
        documents: DocumentStore,
        graphql_ide: GraphQL_IDE | None,
        trusted: TrustedDocuments | None = None,
    ) -> None:
        # Queries over GET are run only by hash (persisted queries): see parse_http_body.
        super().__init__(schema, graphql_ide=graphql_ide, allow_queries_via_get=True)
        self.documents = documents
        self.trusted = trusted

    @classmethod
    def for_settings(cls, settings: Settings, schema: ClinicSchema) -> ClinicGraphQL:
        """The view the settings describe: its persisted-query store, GraphiQL or not, and
        ``CLINIC_TRUSTED_DOCUMENTS`` checked against the schema (a bad manifest stops the
        start: ``SettingsError``), each trusted document parsed and validated ahead of its
        first request."""
        trusted = None
        if settings.trusted_documents is not None:
            try:
                trusted = load_trusted(settings.trusted_documents, schema)
            except ManifestError as error:
                raise SettingsError(f"CLINIC_TRUSTED_DOCUMENTS: {error}") from error
            schema.prepare(trusted.documents.values())
            logger.info("trusted documents only", extra={"documents": len(trusted.documents)})
        return cls(
            schema,
            DocumentStore(settings.persisted_cache_bytes, settings.persisted_documents_max),
            graphql_ide="graphiql" if settings.graphiql else None,
            trusted=trusted,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        response: Response
        request = Request(scope=scope, receive=receive)
        token = current_request.set(request)
        try:
            response = await self.run(request)
        except RequestRefusedError as refused:
            response = refusal(refused.status, refused.message, refused.code, refused.field)
        except HTTPException as error:
            status = HTTPStatus(error.status_code)
            response = refusal(status, error.reason, status.name)
        finally:
            current_request.reset(token)
        await response(scope, receive, send)

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        """The result as the media type the client asked for (GraphQL over HTTP): under
        ``application/graphql-response+json`` a request error (the document does not parse
        or validate, the variables do not coerce) is answered 400 with no ``data`` entry;
        under ``application/json`` (the default) every result is answered 200, as before."""
        processed = process_result(result)
        sub_response = request_state(request).sub_response
        if sub_response is None or not accepts_graphql_response(request.headers.get("accept")):
            return processed
        sub_response.media_type = GRAPHQL_RESPONSE
        if is_request_error(result):
            sub_response.status_code = HTTPStatus.BAD_REQUEST
            processed.pop("data", None)
        return processed

    def create_response(
        self,
        response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse],
        sub_response: Response,
    ) -> Response:
        response = super().create_response(response_data, sub_response)
        if sub_response.media_type == GRAPHQL_RESPONSE:
            response.headers["content-type"] = f"{GRAPHQL_RESPONSE}; charset=utf-8"
        return response

    def should_render_graphql_ide(self, request: BaseRequestProtocol) -> bool:
        """GraphiQL for a browser's GET, but not for a persisted query sent by GET."""
        return super().should_render_graphql_ide(request) and (
            request.query_params.get("extensions") is None
        )

    async def render_graphql_ide(self, request: Request) -> HTMLResponse:
        """Our GraphiQL page, whose files this service serves (server/graphiql.py), in place
        of Strawberry's, which loads them from a CDN."""
        return graphiql.page_response()

    async def parse_http_body(
        self, request: AsyncHTTPRequestAdapter
    ) -> GraphQLRequestData | list[GraphQLRequestData]:
        """Strawberry's parsing, after the Content-Encoding check, and then ``operationName``
        must be a string or null (as Strawberry already requires of the other members)."""
        check_content_encoding(request.headers.get("content-encoding"))
        data = await super().parse_http_body(request)
        for item in data if isinstance(data, list) else [data]:
            if not isinstance(item.operation_name, str | None):
                raise RequestRefusedError(
                    "operationName must be a string or null", field="operationName"
                )
            await self._resolve_persisted(item, request.method)
        return data

    async def _resolve_persisted(self, item: GraphQLRequestData, method: str) -> None:
        """A persisted query's document (appointments/persisted_documents.py), or with
        trusted documents (schema/trusted_documents.py) the trusted one asked for; a query
        over GET must be sent by hash (a mutation over GET is refused by Strawberry)."""
        try:
            persisted = PersistedQuery.from_extensions(item.extensions)
            if self.trusted is not None:
                item.query = self.trusted.resolve(persisted, item.query)
                return
            if persisted is None:
                if method == "GET":
                    raise RequestRefusedError(
                        "queries are not allowed when using GET (except by hash)",
                        code=HTTPStatus.BAD_REQUEST.name,
                    )
                return
            services: Services = current_request.get().app.state.services
            item.query = await self.documents.resolve(services.sessions, persisted, item.query)
        except PersistedQueryError as error:
            status = HTTPStatus.OK if error.not_found else HTTPStatus.BAD_REQUEST
            raise RequestRefusedError(error.message, status, error.code) from None

    def parse_json(self, data: str | bytes) -> Any:
        """The body (the only JSON Strawberry parses here): see server/request_body.py."""
        return decode_body(data)

    def encode_json(self, data: object) -> bytes:
        """Response bodies with orjson: same JSON, several times faster than json.dumps.

        orjson writes non-ASCII characters as UTF-8 where json.dumps escaped them
        (equal JSON). A value orjson refuses (an integer beyond 64 bits, a non-string
        key) is encoded as before rather than failing the response.
        """
        try:
            return orjson.dumps(data)
        except orjson.JSONEncodeError:
            encoded = super().encode_json(data)
            return encoded.encode() if isinstance(encoded, str) else encoded

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> RequestContext:
        assert isinstance(request, Request), "subscriptions are not served"
        state = request_state(request)
        if isinstance(response, Response):
            state.sub_response = response
        services: Services = request.app.state.services
        return services.contexts.for_request(
            request,
            response if isinstance(response, Response) else None,
            state.viewer or Viewer(),
            state.access,
            state.db,
        )


GRAPHQL_RESPONSE = "application/graphql-response+json"


def accepts_graphql_response(accept: str | None) -> bool:
    """Whether ``application/graphql-response+json`` is the client's preferred media type of
    the two we answer in (the highest quality; the earlier one on a tie)."""
    if not accept or GRAPHQL_RESPONSE not in accept:
        return False
    best: tuple[float, int, str] | None = None
    for index, part in enumerate(accept.split(",")):
        media, *parameters = (piece.strip() for piece in part.split(";"))
        if media not in (GRAPHQL_RESPONSE, "application/json", "*/*", "application/*"):
            continue
        quality = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0 and (best is None or quality > best[0]):
            best = (quality, index, media)
    return best is not None and best[2] == GRAPHQL_RESPONSE


def is_request_error(result: ExecutionResult) -> bool:
    """The document could not run at all: it does not parse or validate, or its variables
    do not coerce (errors with no path, and no data), as opposed to a field error."""
    if isinstance(result, PreExecutionError):
        return True
    return (
        result.data is None
        and bool(result.errors)
        and all(error.path is None for error in result.errors or ())
    )


def refusal(status: HTTPStatus, message: str, code: str, field: str | None = None) -> Response:
    """A request refused before any execution, as a GraphQL ``errors`` body."""
    extensions: dict[str, str] = {"code": code}
    if field is not None:
        extensions["field"] = field
    return JSONResponse(
        {"errors": [{"message": message, "extensions": extensions}]}, status_code=status
    )
