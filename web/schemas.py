"""Wire shapes shared by both audiences (``api.md``): points, fares, trips, receipts.

Frames on the sockets carry the same dicts that these models validate, built by
``dispatch.views``; the models exist so ``/openapi.json`` describes every answer.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

Lat = Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False, strict=False)]
Lng = Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False, strict=False)]


class Point(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lat: Lat
    lng: Lng


class FareBreakdown(BaseModel):
    base_cents: int
    distance_cents: int
    time_cents: int
    cost_recovery_cents: int
    platform_commission_cents: int = Field(description="Always 0: the co-op takes no cut.")
    minimum_topup_cents: int = Field(
        0, description="How much of base_cents tops the fare up to the rule's minimum."
    )


class ReceiptBreakdown(FareBreakdown):
    cancellation_fee_cents: int = Field(
        0, description="On a cancellation's receipt: the fee, all of it the driver's."
    )


class FareOut(BaseModel):
    total_cents: int
    currency: str
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
