"""Every ORM table, one file each. Importing this package registers them all on
``Base.metadata`` (Alembic's env.py reads it)."""

from core.models.base import Base
from core.models.fare_rule import FareRule
from core.models.member import Member, Vehicle
from core.models.offer import Offer
from core.models.rider import Rider
from core.models.service_area import ServiceArea
from core.models.trip import Trip, TripEvent

__all__ = [
    "Base",
    "FareRule",
    "Member",
    "Offer",
    "Rider",
    "ServiceArea",
    "Trip",
    "TripEvent",
    "Vehicle",
]
