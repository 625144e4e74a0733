"""The co-op's hash-chained audit log (``fares.audit``, ``docs/governance.md``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.models.base import Base

# Named here because the migration creates it and the tamper test switches it off.
APPEND_ONLY_TRIGGER = "audit_log_append_only"


class AuditEntry(Base):
    """One entry of the chain: ``hash = sha256_hex(prev_hash + JCS({seq, at, kind,
    payload}))``. ``at`` is stored as the exact text that was hashed (and that the API
    serves), never re-rendered from a timestamp. A trigger refuses UPDATE, DELETE and
    TRUNCATE, whoever asks."""

    __tablename__ = "audit_log"
    __table_args__ = (
        CheckConstraint("seq >= 1", name="seq_positive"),
        CheckConstraint("hash ~ '^[0-9a-f]{64}$' AND prev_hash ~ '^[0-9a-f]{64}$'", name="hex"),
    )

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    # Unique: an entry has at most one successor, so the chain cannot fork.
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)
