from __future__ import annotations

from datetime import datetime
from typing import Any

from geoalchemy2 import Geography
from sqlalchemy import String, func
from sqlalchemy.orm import Mapped, mapped_column

from core.models.base import Base


class ServiceArea(Base):
    __tablename__ = "service_areas"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    polygon: Mapped[Any] = mapped_column(Geography("POLYGON", srid=4326))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
