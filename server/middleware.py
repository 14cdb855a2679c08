"""ASGI middleware around every route: header and body size limits, request ids, and containing
unexpected exceptions so that none escapes the application."""

from __future__ import annotations

import logging
import re
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from schema.request_id import request_id

logger = logging.getLogger("server")


class RequestIdMiddleware:
    """Takes the request id from X-Request-ID (or makes one), logs with it, and returns it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get("x-request-id", "")
        current = given if _ACCEPTABLE_REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        token = request_id.set(current)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["X-Request-ID"] = current
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id.reset(token)


_ACCEPTABLE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class HeaderLimitMiddleware:
    """Answers 431 to a request whose headers are larger than ``max_total`` bytes in all,
    or that has one header (name and value) larger than ``max_each``.

    A token, a client name and the usual headers take a few kilobytes; without a limit
    a request could hold megabytes of memory in headers while its body is capped.
    """

    def __init__(self, app: ASGIApp, max_total: int, max_each: int) -> None:
        self.app = app
        self.max_total = max_total
        self.max_each = max_each

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            total = 0
            for name, value in scope["headers"]:
                size = len(name) + len(value)
                total += size
                if size > self.max_each or total > self.max_total:
                    limit = (
                        f"a request header larger than {self.max_each} bytes"
                        if size > self.max_each
                        else f"request headers larger than {self.max_total} bytes in all"
                    )
                    response = JSONResponse(
                        {
                            "errors": [
                                {"message": limit, "extensions": {"code": "HEADERS_TOO_LARGE"}}
                            ]
                        },
                        status_code=431,
                    )
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)


class BodySizeLimitMiddleware:
    """Answers 413 to a request body larger than ``max_bytes`` (declared or as it streams)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _too_large(self.max_bytes)(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLargeError
            return message

        try:
            await self.app(scope, counting_receive, send)
        except _BodyTooLargeError:
            await _too_large(self.max_bytes)(scope, receive, send)


class _BodyTooLargeError(Exception):
    pass


def _too_large(max_bytes: int) -> Response:
    return JSONResponse(
        {"errors": [{"message": f"request body larger than {max_bytes} bytes"}]}, status_code=413
    )


class ContainErrorsMiddleware:
    """Answers an exception that escaped the routes with a masked 500, and lets it go no further.

    An exception leaving the ASGI application makes the server close the client's
    connection (uvicorn does once a response has started, and Starlette's error
    middleware starts one); contained here, the keep-alive connection stays usable.
    The exception is logged in full with the request id; the answer is the same
    masked ``INTERNAL_ERROR`` GraphQL errors get, naming the request id. An exception
    after the response has started cannot be answered any more: it is re-raised.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            logger.exception("unexpected error answering %s %s", scope["method"], scope["path"])
            if started:
                raise
            await internal_error()(scope, receive, send)


def internal_error() -> Response:
    current = request_id.get()
    return JSONResponse(
        {
            "errors": [
                {
                    "message": f"Internal error; quote request id {current} when reporting it.",
                    "extensions": {"code": "INTERNAL_ERROR", "requestId": current},
                }
            ]
        },
        status_code=500,
    )
