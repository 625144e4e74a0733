"""The request body cap: an HTTP body larger than ``COOP_MAX_BODY_BYTES`` is refused with
413 problem+json (``payload-too-large``) before it is read into memory.

A declared ``Content-Length`` over the cap is refused without reading a byte. A body
without one (``Transfer-Encoding: chunked``) is counted as it arrives and refused at the
first chunk that crosses the cap, so no handler ever holds more than the cap.
"""

from __future__ import annotations

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.problems import problem

SLUG = "payload-too-large"


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a streamed body crosses the cap; FastAPI passes an
    ``HTTPException`` from body reading through to the problem+json handler."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes")


def too_large(limit: int) -> ASGIApp:
    detail = f"the request body is larger than {limit} bytes"
    return problem(413, SLUG, "Request body too large", detail, max_body_bytes=limit)


class BodySizeLimit:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.limit = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                if value.isdigit() and int(value) > self.limit:
                    await too_large(self.limit)(scope, receive, send)
                    return
                break
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except BodyTooLarge:
            if started:
                raise
            await too_large(self.limit)(scope, receive, send)
