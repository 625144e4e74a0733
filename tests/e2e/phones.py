"""Test clients that behave like the apps: real HTTP (httpx) and real WebSockets."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from tests.conftest import Server

# Generous: the dispatcher runs every 0.1 s in tests, so an event that has not arrived
# within this is missing, not slow.
FRAME_TIMEOUT_S = 10.0
MIDTOWN = {"lat": 40.7549, "lng": -73.9840}  # Times Square-ish
NEAR_MIDTOWN = {"lat": 40.7560, "lng": -73.9860}
CHELSEA = {"lat": 40.7465, "lng": -74.0014}

_phones = itertools.count(1000)


def phone_number() -> str:
    return f"+1 555 {next(_phones):04d}"


@dataclass
class Socket:
    """A phone's socket. Every frame received is kept in ``frames``; frames passed over
    while waiting for something else stay in ``backlog`` for a later ``expect``."""

    conn: ClientConnection
    frames: list[dict[str, Any]] = field(default_factory=list)
    backlog: list[dict[str, Any]] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def send(self, frame: dict[str, Any] | str) -> None:
        await self.conn.send(frame if isinstance(frame, str) else json.dumps(frame))

    async def _read(self) -> dict[str, Any]:
        frame: dict[str, Any] = json.loads(await self.conn.recv())
        self.frames.append(frame)
        return frame

    async def recv(self, timeout: float = FRAME_TIMEOUT_S) -> dict[str, Any]:
        if self.backlog:
            return self.backlog.pop(0)
        return await asyncio.wait_for(self._read(), timeout)

    async def _take(self, wanted: Any, timeout: float) -> dict[str, Any]:
        for i, frame in enumerate(self.backlog):
            if wanted(frame):
                return self.backlog.pop(i)

        async def wait() -> dict[str, Any]:
            while True:
                frame = await self._read()
                if wanted(frame):
                    return frame
                self.backlog.append(frame)

        return await asyncio.wait_for(wait(), timeout)

    async def expect(
        self, kind: str, timeout: float = FRAME_TIMEOUT_S, **match: Any
    ) -> dict[str, Any]:
        """The first frame of type ``kind`` (matching ``match``), whenever it came."""
        return await self._take(
            lambda f: f.get("type") == kind and all(f.get(k) == v for k, v in match.items()),
            timeout,
        )

    async def expect_reply(self, ref: Any, timeout: float = FRAME_TIMEOUT_S) -> dict[str, Any]:
        """The server's reply (``ok`` or ``error``) to the frame sent with ``id`` ``ref``."""
        return await self._take(lambda f: f.get("ref") == ref, timeout)

    async def call(self, frame: dict[str, Any]) -> dict[str, Any]:
        """Send a frame with an ``id`` and return the server's reply to it (``ok`` or
        ``error``); events that arrive meanwhile stay in the backlog."""
        ref = next(self._ids)
        await self.send({**frame, "id": ref})
        return await self._take(lambda f: f.get("ref") == ref, FRAME_TIMEOUT_S)


@asynccontextmanager
async def open_socket(
    server: Server, path: str, token: str, *, header: bool = True, query: str = ""
) -> AsyncIterator[Socket]:
    url = f"{server.ws_url}{path}"
    headers = {}
    if header:
        headers["Authorization"] = f"Bearer {token}"
    else:
        query = f"token={token}" + (f"&{query}" if query else "")
    if query:
        url = f"{url}?{query}"
    async with connect(url, additional_headers=headers, open_timeout=10) as conn:
        yield Socket(conn)


async def new_rider(http: httpx.AsyncClient) -> tuple[str, dict[str, str]]:
    r = await http.post("/v1/riders", json={"name": "Rider", "phone": phone_number()})
    assert r.status_code == 201, r.text
    body = r.json()
    return body["id"], {"Authorization": f"Bearer {body['token']}"}


async def new_driver(http: httpx.AsyncClient, server: Server) -> tuple[str, str]:
    r = await http.post(
        "/v1/drivers",
        json={"name": "Driver", "phone": phone_number(), "vehicle": {"plate": "T1", "seats": 4}},
        headers={"Authorization": f"Bearer {server.settings.operator_token}"},
    )
    assert r.status_code == 201, r.text
    body = r.json()
    return body["id"], body["token"]


def problem_of(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    body: dict[str, Any] = response.json()
    assert {"type", "title", "status", "detail"} <= set(body)
    assert body["status"] == response.status_code
    return body
