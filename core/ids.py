"""Opaque, time-ordered ids with a readable prefix (``trp_…``, ``drv_…``).

Time-ordered so that ids sort roughly by creation and index pages stay warm; the prefix
makes a log line or a support ticket say what kind of thing an id names.
"""

from __future__ import annotations

import secrets
import time


def new_id(prefix: str) -> str:
    return f"{prefix}_{time.time_ns() // 1_000_000:012x}{secrets.token_hex(7)}"


def can_exist(ident: str) -> bool:
    """Whether any stored row could have this id. PostgreSQL text cannot hold NUL, so a
    client's id with one names nothing (looking it up would fail as a data error)."""
    return "\x00" not in ident
