"""Error bodies and headers every response of the service gets.

* Every error is JSON ``{"detail": "<one line naming the problem>"}``: request validation
  errors are flattened to one line (FastAPI's default lists Python types and the raw input),
  and an unexpected exception answers 500 with its type name only, never a repr or traceback.
* ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer``, ``Cache-Control:
  no-store`` (results about a patient's image must not sit in a shared cache) and, unless the
  response set its own (the page does), a CSP that allows nothing to load or frame it.
* Header values are latin-1 on the wire: :func:`header_value` percent-encodes UTF-8
  (RFC 3986) so a class name like "пневмония" cannot turn an answer into a 500.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException

from ..errors import CxrkitError

log = logging.getLogger("cxrkit.serve")

API_CSP = "default-src 'none'; frame-ancestors 'none'"
SECURITY_HEADERS = {"x-content-type-options": "nosniff", "referrer-policy": "no-referrer", "cache-control": "no-store"}


class HttpError(CxrkitError):
    """An answer other than 200: ``status``, a one-line ``message``, extra ``headers``.

    ``close`` ends the connection after the answer (a body that never finished arriving
    leaves the connection in an unknown state).
    """

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None, close: bool = False):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})
        if close:
            self.headers["Connection"] = "close"


def header_value(text: str) -> str:
    """``text`` as a header value: percent-encoded UTF-8; ASCII letters, digits and ``-._~`` kept."""
    return quote(text, safe="")


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    """Add the error handlers and the security headers to ``app``."""

    @app.exception_handler(HttpError)
    async def http_error(request: Request, exc: HttpError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "; ".join(_one_line(e) for e in exc.errors()) or "invalid request")

    @app.exception_handler(HTTPException)
    async def starlette_error(request: Request, exc: HTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), dict(exc.headers or {}))

    app.add_middleware(SecurityHeaders)


class SecurityHeaders:
    """ASGI middleware: the headers above on every answer, and a JSON 500 for a bug (the
    traceback goes to the server log only). Plain ASGI, so the request body stream is untouched."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def send_with_headers(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                for key, value in {**SECURITY_HEADERS, "content-security-policy": API_CSP}.items():
                    headers.setdefault(key, value)
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception as exc:
            log.exception("unexpected error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            await error_response(500, internal_message(exc))(scope, receive, send_with_headers)


def internal_message(exc: BaseException) -> str:
    return (
        f"internal error ({type(exc).__name__}) while answering; nothing about the upload was kept. "
        "The server log has the details"
    )


def _one_line(error: dict) -> str:
    """'query parameter format: Input should be 'png' or 'json'' from one pydantic error."""
    loc = [str(part) for part in error.get("loc", ())]
    where = f"{loc[0]} parameter {'.'.join(loc[1:])}" if len(loc) > 1 else ".".join(loc) or "request"
    return f"{where}: {error.get('msg', 'invalid value')}"
