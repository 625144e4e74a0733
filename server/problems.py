"""The one table from domain errors to HTTP: RFC 9457 problem+json.

``type`` is the error's stable slug (``outside-service-area``, ``offer-expired``…),
which clients switch on; ``title`` and ``detail`` are for people.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.db import is_connection_error, is_data_error
from core.errors import (
    Conflict,
    CoopError,
    Forbidden,
    InvalidInput,
    NotAuthenticated,
    NotFound,
    RateLimited,
    Unavailable,
)

log = logging.getLogger(__name__)

STATUS_OF: list[tuple[type[CoopError], int]] = [
    (InvalidInput, 422),
    (NotAuthenticated, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (RateLimited, 429),
    (Unavailable, 503),
]

PROBLEM = "application/problem+json"


def status_of(exc: CoopError) -> int:
    for kind, code in STATUS_OF:
        if isinstance(exc, kind):
            return code
    return 500


def problem(
    status: int,
    slug: str,
    title: str,
    detail: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {"type": slug, "title": title, "status": status, "detail": detail, **extra}
    headers = dict(headers or {})
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers or None)


# The problem+json body every error answer has (RFC 9457); ``type`` is the stable slug.
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": "stable slug, e.g. `offer-expired`"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "description": "422 only: each invalid field",
            "items": {
                "type": "object",
                "properties": {
                    "loc": {"type": "array", "items": {"type": "string"}},
                    "msg": {"type": "string"},
                },
            },
        },
    },
    "additionalProperties": True,
}

ERROR_DESCRIPTIONS = {
    401: "no valid credentials",
    403: "the wrong role, or someone else's resource",
    404: "no such resource",
    405: "method not allowed",
    409: "the resource's state does not allow this",
    413: "request body too large",
    422: "invalid input",
    429: "rate limited",
    503: "the database or Redis is unavailable; retry shortly",
}
# Probes answer in their own shape, and errors they cannot have are not listed.
_PLAIN = {"/healthz", "/readyz", "/metrics", "/ops"}


def document_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """Declare the problem+json answers of every operation in the OpenAPI document, so
    clients (and schema checkers) know the error shape: 401/403 where credentials are
    read; 404, 405, 409 (a state conflict, e.g. a receipt before completion), 413, 422,
    429 and 503 everywhere else. FastAPI's own 422 schema is replaced: this
    app answers validation errors with problem+json too."""
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    ref = {"$ref": "#/components/schemas/Problem"}
    for path, operations in schema.get("paths", {}).items():
        if path in _PLAIN:
            continue
        for operation in operations.values():
            codes = {404, 405, 409, 413, 422, 429, 503}
            if operation.get("security"):
                codes |= {401, 403}
            responses = operation.setdefault("responses", {})
            for code in sorted(codes):
                existing = responses.get(str(code), {})
                responses[str(code)] = {
                    "description": existing.get("description") or ERROR_DESCRIPTIONS[code],
                    "content": {PROBLEM: {"schema": ref}},
                }
    return schema


def install(app: FastAPI) -> None:
    @app.exception_handler(CoopError)
    async def _domain(request: Request, exc: CoopError) -> JSONResponse:
        if isinstance(exc, RateLimited):
            return problem(
                429,
                exc.slug,
                exc.title,
                exc.detail,
                headers={"Retry-After": str(exc.retry_after_s)},
                retry_after_s=exc.retry_after_s,
            )
        return problem(status_of(exc), exc.slug, exc.title, exc.detail)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))}
            for e in exc.errors()
        ]
        locs = {tuple(e["loc"][-1:]) for e in errors}
        coords = any(loc and loc[0] in ("lat", "lng") for loc in locs)
        slug = "invalid-coordinates" if coords else "invalid-input"
        detail = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors)[:2000]
        return problem(422, slug, "Invalid input", detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:
            # A body that cannot even be decoded (not UTF-8) is invalid input, like one
            # that is not JSON.
            return problem(422, "invalid-input", "Invalid input", str(exc.detail))
        slugs = {404: "not-found", 405: "method-not-allowed", 413: "payload-too-large"}
        slug = slugs.get(exc.status_code, f"http-{exc.status_code}")
        return problem(exc.status_code, slug, str(exc.detail), str(exc.detail))

    async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
        log.warning("backing service unavailable", extra={"error": repr(exc)})
        return problem(
            503,
            "service-unavailable",
            "A backing service is unavailable",
            "the database or Redis did not answer; retry shortly",
        )

    app.add_exception_handler(RedisConnectionError, _unavailable)
    app.add_exception_handler(RedisTimeoutError, _unavailable)
    app.add_exception_handler(ConnectionError, _unavailable)
    app.add_exception_handler(OSError, _unavailable)

    @app.exception_handler(DBAPIError)
    async def _db(request: Request, exc: DBAPIError) -> JSONResponse:
        if is_connection_error(exc):
            return await _unavailable(request, exc)
        if is_data_error(exc):
            return problem(422, "invalid-input", "Invalid input", "a value is not acceptable")
        log.exception("database error", exc_info=exc)
        return problem(500, "internal-error", "Internal error", "an unexpected error occurred")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return problem(500, "internal-error", "Internal error", "an unexpected error occurred")
