"""Time, always timezone-aware UTC."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def iso(moment: datetime | None) -> str | None:
    """A moment as the wire writes it: RFC 3339 in UTC with ``Z``
    (``2026-04-01T12:00:00.250000Z``), exactly as pydantic writes an aware UTC datetime in
    an HTTP answer, so a phone sees one format on HTTP and on the sockets."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
