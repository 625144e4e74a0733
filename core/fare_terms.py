"""The numbers of a fare rule, named once.

Members vote on these fields (``fares.governance``), each rule version and each proposal
stores them (``core.models.fare_rule.FareTermsColumns`` generates the columns from this
type, for both tables), pricing reads them (``fares.pricing``), the audit log records
them (``FareTerms.payload``) and the wire shows them (``web.schemas`` generates the
schemas from this type too). Adding a field to the fare rule is: a field here with its
``Term``, a migration adding its columns to ``fare_rules`` and ``proposals``, and tests.

Every value is an integer or a short string: no float enters a rule, its columns or the
audit log. A ``permille`` field is a fraction in [0, 1] to 3 decimals on the wire and
its name there drops the ``_permille`` suffix (``fairness_weight_permille`` is
``fairness_weight``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

CostRecoveryMode = Literal["per_trip", "dues"]
COST_RECOVERY_MODES: tuple[CostRecoveryMode, ...] = ("per_trip", "dues")

# $10,000 per part: far above any fare, low enough that a typo cannot become a vote and
# that every fare priced under the rule fits the trips table's integer columns.
MAX_RULE_CENTS = 1_000_000
PERMILLE_SUFFIX = "_permille"


class Kind(StrEnum):
    """What a field holds, which decides its column, its checks and its wire form."""

    CENTS = "cents"  # an amount, 0..MAX_RULE_CENTS
    CURRENCY = "currency"  # ISO 4217 code, 3 capital letters
    MODE = "mode"  # how costs are recovered: one of COST_RECOVERY_MODES
    PERMILLE = "permille"  # a fraction in per-mille, 0..1000


@dataclass(frozen=True, slots=True)
class Term:
    kind: Kind
    description: str
    # A proposal may leave it out, and then it keeps the current rule's value (a bylaw
    # that members who only vote on prices need not restate).
    keeps_current: bool = False


def term(kind: Kind, description: str, *, keeps_current: bool = False) -> dict[str, Term]:
    """A field's metadata: ``field(metadata=term(...))``."""
    return {"term": Term(kind, description, keeps_current)}


@dataclass(frozen=True, slots=True, kw_only=True)
class FareTerms:
    """The numbers a vote sets: a rule version less its version number and adoption."""

    base_cents: int = field(
        metadata=term(Kind.CENTS, "Charged on every trip (before any minimum top-up).")
    )
    per_km_cents: int = field(
        metadata=term(Kind.CENTS, "Per kilometre of the trip's road distance.")
    )
    per_minute_cents: int = field(
        metadata=term(Kind.CENTS, "Per minute of the trip's estimated duration.")
    )
    minimum_cents: int = field(
        metadata=term(Kind.CENTS, "The least a trip costs before cost recovery.")
    )
    cancellation_fee_cents: int = field(
        metadata=term(Kind.CENTS, "A rider's late cancellation, paid to the driver whole.")
    )
    currency: str = field(metadata=term(Kind.CURRENCY, "ISO 4217; a vote cannot change it."))
    cost_recovery_mode: CostRecoveryMode = field(
        metadata=term(
            Kind.MODE,
            "per_trip: each trip carries the period's fee; dues: members share the budget.",
        )
    )
    fairness_weight_permille: int = field(
        default=0,
        metadata=term(
            Kind.PERMILLE,
            "The dispatcher's fairness weight in [0, 1], to 3 decimals "
            "(docs/dispatch-algorithm.md).",
            keeps_current=True,
        ),
    )

    @property
    def fairness_weight(self) -> float:
        """The dispatcher's fairness weight in [0, 1] (``dispatch.batch.fairness``)."""
        return self.fairness_weight_permille / 1000

    def payload(self) -> dict[str, Any]:
        """The fields as stored and audited (per-mille as integers)."""
        return {f.name: getattr(self, f.name) for f in fields(FareTerms)}

    def terms(self) -> FareTerms:
        """The voted numbers alone (of a rule version, without its version record)."""
        return FareTerms(**self.payload())


@dataclass(frozen=True, slots=True, kw_only=True)
class FareRuleTerms(FareTerms):
    """One adopted version of the fare rule: its terms and where they came from."""

    version: int
    adopted_at: datetime | None = None
    # The proposal whose adoption created this version (None for the opening rule).
    proposal_id: str | None = None


@dataclass(frozen=True, slots=True)
class TermField:
    """A field of ``FareTerms`` with its ``Term``: what generated code iterates over."""

    name: str
    term: Term

    @property
    def wire_name(self) -> str:
        if self.term.kind is Kind.PERMILLE:
            return self.name.removesuffix(PERMILLE_SUFFIX)
        return self.name

    def to_wire(self, value: Any) -> Any:
        return value / 1000 if self.term.kind is Kind.PERMILLE else value

    def from_wire(self, value: Any) -> Any:
        """The stored value of a wire value already validated (a per-mille fraction has
        at most 3 decimals, so rounding only removes binary noise)."""
        return round(value * 1000) if self.term.kind is Kind.PERMILLE else value


TERM_FIELDS: tuple[TermField, ...] = tuple(
    TermField(f.name, f.metadata["term"]) for f in fields(FareTerms)
)


def from_wire_view(view: dict[str, Any]) -> dict[str, Any]:
    """The fields of a ``wire_view`` as ``FareTerms`` keywords."""
    return {f.name: f.from_wire(view[f.wire_name]) for f in TERM_FIELDS}


def wire_view(terms: FareTerms) -> dict[str, Any]:
    """``FareRuleFields`` on the wire: per-mille fields as fractions under their wire
    names (the same dict in HTTP answers, socket frames and the dashboard)."""
    return {f.wire_name: f.to_wire(getattr(terms, f.name)) for f in TERM_FIELDS}


# The rule migration 0001 seeds as version 1, before any vote (the migration keeps its
# own copy: a migration is history and never imports the application).
OPENING_TERMS = FareTerms(
    base_cents=250,
    per_km_cents=120,
    per_minute_cents=35,
    minimum_cents=800,
    cancellation_fee_cents=500,
    currency="USD",
    cost_recovery_mode="per_trip",
    fairness_weight_permille=0,
)
