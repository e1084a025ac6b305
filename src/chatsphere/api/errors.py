"""Every REST refusal as ``{"error": {"code", "message", "details"?}}`` with its status."""

from __future__ import annotations

import logging
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ..errors import ChatError, ErrorCode

log = logging.getLogger(__name__)

_HTTP_CODES = {
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    413: ErrorCode.MESSAGE_TOO_LARGE,
    429: ErrorCode.RATE_LIMITED,
}


def problem(error: ChatError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if error.code is ErrorCode.UNAUTHORIZED else None
    return JSONResponse({"error": error.to_dict()}, status_code=error.http_status, headers=headers)


def _allowed_methods(request: Request, first: str) -> str:
    """Every method of the path, from the OpenAPI document (``first``: Starlette's guess)."""
    methods = {m.strip().upper() for m in first.split(",") if m.strip()}
    for template, operations in request.app.openapi().get("paths", {}).items():
        pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, request.url.path):
            methods.update(m.upper() for m in operations)
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods))


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ChatError)
    async def _chat_error(_request: Request, exc: ChatError) -> JSONResponse:
        return problem(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"field": ".".join(str(p) for p in err.get("loc", ())), "problem": str(err.get("msg"))}
            for err in exc.errors()[:10]
        ]
        first = problems[0] if problems else {"field": "?", "problem": "invalid"}
        return problem(
            ChatError(
                ErrorCode.INVALID_PAYLOAD,
                f"{first['field']}: {first['problem']}",
                {"errors": problems},
            )
        )

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, ErrorCode.INVALID_PAYLOAD)
        response = JSONResponse(
            {"error": {"code": code.value, "message": str(exc.detail)}},
            status_code=exc.status_code,
        )
        if exc.headers:
            response.headers.update(exc.headers)
        if exc.status_code == 405:
            # Starlette names only the first route matching the path; list every method.
            response.headers["Allow"] = _allowed_methods(request, response.headers.get("Allow", ""))
        return response

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(ChatError(ErrorCode.INTERNAL_ERROR, "internal error"))
