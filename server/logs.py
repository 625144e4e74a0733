"""Structured JSON logs: one object per line, with whatever ``extra`` the caller gave
and the id of the HTTP request or socket being served (``request_id``).

No credential reaches a log line: every line is scrubbed, whoever wrote it (uvicorn's
access log prints request paths, and a socket's ``?token=`` is in its path). Redacted:
``token=`` query values, ``Bearer`` credentials, anything shaped like a JWT, and the
configured operator token and JWT secret wherever they appear (docs/security.md).
"""

from __future__ import annotations

import logging
import re
import secrets as secrets_
import sys
from collections.abc import Iterable
from contextvars import ContextVar
from datetime import UTC, datetime

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
# A caller's own request id is kept when it looks like one (a proxy's, a load test's);
# anything else is replaced, so a header cannot inject text into the logs.
_GOOD_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
REQUEST_ID_HEADER = "x-request-id"

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)


REDACTED = "[redacted]"
_PATTERNS = (
    # Stops at a backslash too: the line is JSON by now, and a quote after the token is
    # escaped (``\"``); eating the backslash would leave the quote unescaped.
    (re.compile(r"(?i)(token=)[^&\s\"'\\]+"), r"\1" + REDACTED),
    (re.compile(r"(?i)(bearer\s+)[^\s\"',]+"), r"\1" + REDACTED),
    (re.compile(r"eyJ[\w-]*\.[\w-]+\.[\w-]*"), REDACTED),
)


class Redactor:
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Short strings would redact ordinary words; real secrets are long.
        self._secrets = sorted({s for s in secrets if len(s) >= 8}, key=len, reverse=True)

    def __call__(self, line: str) -> str:
        for secret in self._secrets:
            if secret in line:
                line = line.replace(secret, REDACTED)
        for pattern, replacement in _PATTERNS:
            line = pattern.sub(replacement, line)
        return line


class JsonFormatter(logging.Formatter):
    def __init__(self, redact: Redactor | None = None) -> None:
        super().__init__()
        self._redact = redact or Redactor()

    def format(self, record: logging.LogRecord) -> str:
        return self._redact(self._format(record))

    def _format(self, record: logging.LogRecord) -> str:
        entry = {
            "at": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = request_id.get()
        if rid is not None:
            entry["request_id"] = rid
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class RequestIdMiddleware:
    """Gives every HTTP request and socket an id: the caller's ``X-Request-ID`` when it
    is sane, else a new one. Every log line written while serving it carries the id,
    and HTTP answers return it in ``X-Request-ID`` so a user's report can be found."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        given = (
            dict(scope.get("headers") or []).get(REQUEST_ID_HEADER.encode(), b"").decode("latin-1")
        )
        rid = given if _GOOD_REQUEST_ID.match(given) else secrets_.token_hex(8)
        token = request_id.set(rid)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER.encode(), rid.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id.reset(token)


def configure(level: str = "INFO", *, secrets: Iterable[str] = ()) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(Redactor(secrets)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
