"""Wire shapes shared by both audiences (``api.md``): points, fares, trips, receipts,
fare rules.

Frames on the sockets carry the same dicts that these models validate, built by
``dispatch.views``; the models exist so ``/openapi.json`` describes every answer.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, Self, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model

from core.fare_terms import (
    COST_RECOVERY_MODES,
    MAX_RULE_CENTS,
    TERM_FIELDS,
    FareRuleTerms,
    FareTerms,
    Kind,
    TermField,
    wire_view,
)

# Strict: a coordinate is a JSON number. Lax mode would take `true` as 1.0 and "10.5"
# as 10.5, so a buggy app would be quoted and sent to a place nobody asked for; the
# driver socket refuses both too (``LatLng.checked``). Strict floats still take
# integers (40 is 40.0).
Lat = Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False, strict=True)]
Lng = Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False, strict=True)]


class RequestIn(BaseModel):
    """The base of every request body: unknown fields are ignored, so an app one version
    ahead (sending a field this server does not know yet) is still served; a known field
    of the wrong type, or a missing one, is still refused (docs/design/api.md,
    "Conventions"). The one exception is ``FareRuleFieldsIn``: members vote on the rule as
    written, so a term the server cannot keep is refused rather than dropped."""

    model_config = ConfigDict(extra="ignore")


class Point(RequestIn):
    lat: Lat
    lng: Lng


class FareBreakdown(BaseModel):
    """The parts of a fare, and only those: they add up to ``total_cents`` exactly, so a
    client may sum every key. (``minimum_topup_cents`` is not a part; it lives beside
    ``breakdown``.)"""

    base_cents: int = Field(description="The rule's base, with any minimum-fare top-up.")
    distance_cents: int
    time_cents: int
    cost_recovery_cents: int
    platform_commission_cents: int = Field(description="Always 0: the co-op takes no cut.")


class ReceiptBreakdown(FareBreakdown):
    """A receipt's parts; they add up to the receipt's ``total_cents``."""

    cancellation_fee_cents: int = Field(
        0, description="On a cancellation's receipt: the fee, all of it the driver's."
    )


MINIMUM_TOPUP = (
    "How much of breakdown.base_cents tops the ride up to the rule's minimum fare: "
    "already inside base_cents, not a part to add."
)


class FareOut(BaseModel):
    total_cents: int
    currency: str
    minimum_topup_cents: int = Field(0, description=MINIMUM_TOPUP)
    breakdown: FareBreakdown


class TripOut(BaseModel):
    id: str
    status: str
    rider_id: str
    driver_id: str | None
    pickup: Point
    dropoff: Point
    requested_at: datetime
    assigned_at: datetime | None
    arrived_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    cancelled_at: datetime | None
    expired_at: datetime | None = None
    cancelled_by: str | None = None
    cancellation_fee_cents: int = Field(
        0, description="Charged to the rider for a late cancellation, paid to the driver."
    )
    fare: FareOut | None
    fare_rule_version: int
    pickup_eta_s: int | None
    distance_m: int
    duration_s: int


class TripPage(BaseModel):
    items: list[TripOut]
    next_cursor: str | None


class ReceiptOut(BaseModel):
    trip_id: str
    total_cents: int
    currency: str
    driver_earnings_cents: int
    cost_recovery_cents: int
    platform_commission_cents: int
    distance_m: int
    duration_s: int
    fare_rule_version: int
    minimum_topup_cents: int = Field(0, description=MINIMUM_TOPUP)
    breakdown: ReceiptBreakdown
    driver_id: str | None
    completed_at: datetime | None
    kind: str = Field("trip", description="trip | cancellation (a late cancellation's fee)")
    cancelled_at: datetime | None = None


class QuoteOut(BaseModel):
    fare: FareOut
    distance_m: int
    duration_s: int
    pickup_eta_s: int | None
    fare_rule_version: int
    quote_id: str = Field(
        description="Send it with POST /v1/trips to be charged this quote's fare rule "
        "version, even if members adopt a new one meanwhile."
    )
    quote_expires_at: datetime = Field(description="After this, quote_id is refused.")


# -- fare rules: generated from core.fare_terms, so a new field needs no edit here --------

ModelT = TypeVar("ModelT", bound=BaseModel)


def _permille(fraction: float) -> int | None:
    """A fraction as written (0.25, not 0.25000000000000001) in per-mille; None when it
    has more than 3 decimals. The bylaws are kept in per-mille: no float is stored."""
    exact = Decimal(repr(fraction)) * 1000
    return int(exact) if exact == exact.to_integral_value() else None


def _three_decimals(value: float | None) -> float | None:
    if value is not None and _permille(value) is None:
        raise ValueError("has at most 3 decimals")
    return value


def _wire_field(f: TermField, *, draft: bool) -> tuple[Any, Any]:
    """A field's type and ``Field`` on the wire: strict limits where members send it
    (``draft``), plain types where the server answers."""
    kind, description = f.term.kind, f.term.description
    if kind is Kind.CENTS:
        if draft:
            return Annotated[int, Field(ge=0, le=MAX_RULE_CENTS, strict=True)], Field(
                description=description
            )
        return int, Field(description=description)
    if kind is Kind.CURRENCY:
        return str, Field(pattern=r"^[A-Z]{3}$" if draft else None, description=description)
    if kind is Kind.MODE:
        mode: Any = Literal[COST_RECOVERY_MODES]
        return mode, Field(description=description)
    if draft:
        optional = f.term.keeps_current
        fraction: Any = Annotated[
            float | None if optional else float,
            Field(ge=0, le=1, strict=True, allow_inf_nan=False),
            AfterValidator(_three_decimals),
        ]
        if optional:
            description += " Left out, it keeps the current rule's value."
        return fraction, Field(None if optional else ..., description=description)
    return float, Field(ge=0, le=1, description=description)


def with_fare_terms(*, draft: bool) -> Callable[[type[ModelT]], type[ModelT]]:
    """Give a model the fields of ``core.fare_terms.FareTerms``, under their wire names
    (``draft``: as a member sends them in a proposal). The class returned is a subclass
    of the one decorated, with the same name, so OpenAPI names it as written."""

    def build(cls: type[ModelT]) -> type[ModelT]:
        return create_model(  # type: ignore[call-overload,no-any-return]
            cls.__name__,
            __base__=cls,
            __module__=cls.__module__,
            __doc__=cls.__doc__,
            **{f.wire_name: _wire_field(f, draft=draft) for f in TERM_FIELDS},
        )

    return build


@with_fare_terms(draft=True)
class FareRuleFieldsIn(BaseModel):
    """The fare rule a member proposes (FareRuleFields). A field that keeps the current
    value may be left out."""

    model_config = ConfigDict(extra="forbid")

    def draft(self) -> dict[str, Any]:
        """The fields given, as ``fares.voting.RuleDraft``."""
        given = {}
        for f in TERM_FIELDS:
            value = getattr(self, f.wire_name)
            if value is None:
                continue
            given[f.name] = _permille(value) if f.term.kind is Kind.PERMILLE else value
        return given


@with_fare_terms(draft=False)
class FareRuleFieldsOut(BaseModel):
    """FareRuleFields: the numbers a vote sets."""

    @classmethod
    def of(cls, terms: FareTerms) -> Self:
        return cls.model_validate(wire_view(terms))


@with_fare_terms(draft=False)
class FareRuleOut(BaseModel):
    """FareRule: one version of the fare rule, readable by anyone."""

    version: int
    adopted_at: datetime | None
    proposal_id: str | None

    @classmethod
    def of(cls, rule: FareRuleTerms) -> Self:
        return cls.model_validate(
            {
                **wire_view(rule),
                "version": rule.version,
                "adopted_at": rule.adopted_at,
                "proposal_id": rule.proposal_id,
            }
        )
