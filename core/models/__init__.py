"""Every ORM table, one file each. Importing this package registers them all on
``Base.metadata`` (Alembic's env.py reads it)."""

from core.models.audit import AuditEntry
from core.models.base import Base
from core.models.fare_rule import FareRule
from core.models.governance import Ballot, Proposal, ProposalVoter
from core.models.ledger import (
    Budget,
    BudgetLine,
    ClosedPeriod,
    LedgerJournal,
    LedgerPosting,
    PatronageShare,
)
from core.models.member import Member, Vehicle
from core.models.offer import Offer
from core.models.revoked_token import RevokedToken
from core.models.rider import Rider
from core.models.service_area import ServiceArea
from core.models.trip import Trip, TripEvent
from core.models.trip_trace import TripTracePoint

__all__ = [
    "AuditEntry",
    "Ballot",
    "Base",
    "Budget",
    "BudgetLine",
    "ClosedPeriod",
    "FareRule",
    "LedgerJournal",
    "LedgerPosting",
    "Member",
    "Offer",
    "PatronageShare",
    "Proposal",
    "ProposalVoter",
    "RevokedToken",
    "Rider",
    "ServiceArea",
    "Trip",
    "TripEvent",
    "TripTracePoint",
    "Vehicle",
]
