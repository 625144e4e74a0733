from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, func
from sqlalchemy.orm import Mapped, mapped_column

from core.models.base import Base


class RevokedToken(Base):
    """A token refused before its expiry, by its ``jti``. Kept until the token would
    have expired anyway (``expires_at``); past that the signature check refuses it."""

    __tablename__ = "revoked_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    subject_id: Mapped[str] = mapped_column(String(40), index=True)
    role: Mapped[str] = mapped_column(String(16))
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime] = mapped_column(server_default=func.now())
