"""A bare pipelined Lua runner for the one path that must be cheap per call.

Location frames from thousands of drivers run one Lua script each. Through redis-py,
the Python around each pipelined command (command objects, encoders, per-reply
bookkeeping) cost more than Redis did. This runner keeps one connection, writes a
batch of ``EVALSHA`` commands as raw RESP bytes and parses the replies with hiredis:
one write, one read loop, one round trip per batch. It does nothing else; everything
else uses the ordinary client (``core.redis``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

import hiredis

Call = tuple[Sequence[str], Sequence[Any]]


def _bulk(value: Any) -> bytes:
    data = value if isinstance(value, bytes) else str(value).encode()
    return b"$%d\r\n%s\r\n" % (len(data), data)


def pack(*parts: Any) -> bytes:
    return b"*%d\r\n" % len(parts) + b"".join(_bulk(p) for p in parts)


def pack_ascii_args(parts: Sequence[str]) -> bytes | None:
    """The argument bulks for ASCII strings in one pass (a str's length is its byte
    length only when ASCII); None when some part is not ASCII."""
    text = "".join(f"${len(p)}\r\n{p}\r\n" for p in parts)
    return text.encode() if text.isascii() else None


def pack_args(*parts: Any) -> bytes:
    """The argument bulks alone, to append after a ``pack_with_tail`` head."""
    return b"".join(_bulk(p) for p in parts)


def pack_with_tail(parts: Sequence[Any], tail: bytes, tail_count: int) -> bytes:
    """A command whose last ``tail_count`` arguments are already packed (``pack_args``):
    the constant part of a hot command is packed once and reused."""
    head = b"".join(_bulk(p) for p in parts)
    return b"*%d\r\n" % (len(parts) + tail_count) + head + tail


class BulkScriptRunner:
    def __init__(self, url: str, *, timeout_s: float = 5.0) -> None:
        parts = urlsplit(url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 6379
        self._username = unquote(parts.username) if parts.username else None
        self._password = unquote(parts.password) if parts.password else None
        self._db = int(parts.path.lstrip("/") or 0)
        self._timeout_s = timeout_s
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(self._host, self._port)
        setup = []
        if self._password is not None:
            auth = (
                ("AUTH", self._username, self._password)
                if self._username
                else ("AUTH", self._password)
            )
            setup.append(pack(*auth))
        if self._db:
            setup.append(pack("SELECT", self._db))
        if setup:
            writer.write(b"".join(setup))
            for reply in await self._read(reader, len(setup)):
                if isinstance(reply, hiredis.ReplyError):
                    writer.close()
                    raise ConnectionError(f"redis setup failed: {reply}")
        return reader, writer

    @staticmethod
    async def _read(reader: asyncio.StreamReader, count: int) -> list[Any]:
        parser = hiredis.Reader(encoding="utf-8")
        replies: list[Any] = []
        while len(replies) < count:
            data = await reader.read(1 << 16)
            if not data:
                raise ConnectionError("redis closed the connection")
            parser.feed(data)
            while (reply := parser.gets()) is not False:
                replies.append(reply)
        return replies

    async def run(self, commands: list[bytes]) -> list[Any]:
        """Send packed commands in one write; the replies, in order (errors are
        ``hiredis.ReplyError`` values, not raised)."""
        async with self._lock:
            try:
                async with asyncio.timeout(self._timeout_s):
                    if self._writer is None:
                        self._reader, self._writer = await self._connect()
                    assert self._reader is not None
                    self._writer.write(b"".join(commands))
                    return await self._read(self._reader, len(commands))
            except BaseException:
                # A half-read reply stream cannot be resumed: start clean next time.
                self.close()
                raise

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None
