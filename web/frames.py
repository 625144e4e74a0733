"""Every socket frame as a pydantic model: what phones send (parsed with these models by
``web.sockets``) and what the server sends (``docs/websocket.md``; ``asyncapi.json`` is
generated from them).

Each socket has one discriminated union on ``type`` per direction:
``DriverClientFrame`` / ``RiderClientFrame`` here, ``RiderServerFrame`` here and
``DriverServerFrame`` in ``driver_api.frames`` (its proposals and demand maps are the
driver API's shapes).

A refused client frame keeps the error codes the contract documents: each model says
which domain error a bad field is (``refusal``), and when a frame has several bad fields
the first in the model's field order wins: the order ``docs/websocket.md`` gives.
Settings and the clock take part in checking a ``location`` (``LocationLimits``, passed
as the validation context); without them, only what does not depend on them is checked.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal, TypeAlias, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import ErrorDetails

from core.errors import (
    CoopError,
    InaccurateLocation,
    InvalidCoordinates,
    InvalidFrame,
    InvalidLocation,
    UnknownFrameType,
)
from web.schemas import FareOut, Point, TripOut

# Epoch numbers below this are seconds, above it milliseconds (1e11 s is the year 5138).
_MS_THRESHOLD = 1e11

# Any, not JsonValue: a frame is JSON already, and a deeply nested id must not trip
# pydantic's recursion guard (the contract takes any value).
FrameId = Annotated[
    Any,
    Field(
        description="Any JSON value but null. When given, the server answers this frame "
        "exactly once: `ok` or `error`, with `ref` equal to it."
    ),
]
FiniteNumber = Annotated[float, Field(allow_inf_nan=False)]

# -- client → server ---------------------------------------------------------------------


class ClientFrame(BaseModel):
    """What every client frame has. Fields a socket does not know are ignored (an app a
    release ahead may send more); values are strict JSON types (``true`` is not a number,
    ``"1"`` is not an integer)."""

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)

    id: FrameId = None

    @classmethod
    def refuse(cls, error: ErrorDetails) -> CoopError:
        """The domain error a frame of this type is refused with, for its first bad
        field (``error``, pydantic's)."""
        return InvalidFrame(f"{frame_type(cls)}: {_where(error)}{error['msg']}")


class StatusFrame(ClientFrame):
    """Driver: go online (available for offers) or offline."""

    type: Literal["status"]
    status: Literal["online", "offline"]

    @classmethod
    def refuse(cls, error: ErrorDetails) -> CoopError:
        return InvalidFrame("status must be 'online' or 'offline'")


@dataclass(frozen=True)
class LocationLimits:
    """What a ``location`` is checked against beyond its shape (the validation context):
    the server's clock and the settings ``COOP_MAX_CLOCK_SKEW_S`` and
    ``COOP_MAX_LOCATION_ACCURACY_M``."""

    now_ms: int
    max_clock_skew_s: float
    max_accuracy_m: float


def _limits(info: ValidationInfo) -> LocationLimits | None:
    context = info.context
    return context if isinstance(context, LocationLimits) else None


class LocationFrame(ClientFrame):
    """Driver: a position fix. Checked in field order; ``stale-location`` (a ``ts`` not
    after the last fix taken) and ``rate-limited`` are decided by the live index."""

    type: Literal["location"]
    lat: FiniteNumber = Field(ge=-90, le=90, description="WGS84 degrees")
    lng: FiniteNumber = Field(ge=-180, le=180, description="WGS84 degrees")
    ts: StrictInt | FiniteNumber | str | None = Field(
        None,
        description="When the phone took the fix: ISO 8601 with a UTC offset, or epoch "
        "seconds, or epoch milliseconds (a number ≥ 1e11). Missing: the server's receive "
        "time. At most COOP_MAX_CLOCK_SKEW_S ahead of the server's clock.",
    )
    accuracy_m: FiniteNumber | None = Field(
        None, ge=0, description="Within 0..COOP_MAX_LOCATION_ACCURACY_M (200 by default)."
    )
    heading: FiniteNumber | None = Field(None, ge=0, le=360, description="degrees")
    speed_mps: FiniteNumber | None = Field(None, ge=0, le=100)

    @field_validator("ts", mode="after")
    @classmethod
    def _ts_in_ms(cls, value: int | float | str | None, info: ValidationInfo) -> int | None:
        """The fix time as epoch ms (None: stamp it on arrival); not in the future."""
        if value is None:
            return None
        ts_ms = parse_ts_ms(value)
        limits = _limits(info)
        if limits is not None and ts_ms > limits.now_ms + limits.max_clock_skew_s * 1000:
            raise ValueError("ts is in the future")
        return ts_ms

    @field_validator("accuracy_m", mode="after")
    @classmethod
    def _accurate_enough(cls, value: float | None, info: ValidationInfo) -> float | None:
        limits = _limits(info)
        if value is not None and limits is not None and value > limits.max_accuracy_m:
            raise ValueError(f"accuracy_m must be within 0..{limits.max_accuracy_m:g}")
        return value

    @classmethod
    def refuse(cls, error: ErrorDetails) -> CoopError:
        field = str(error["loc"][0]) if error["loc"] else ""
        detail = f"{field}: {error['msg'].removeprefix('Value error, ')}"
        if field in ("lat", "lng"):
            return InvalidCoordinates(detail)
        # A number out of range is inaccurate; anything that is not a number is invalid.
        if field == "accuracy_m" and error["type"] in ("greater_than_equal", "value_error"):
            return InaccurateLocation(detail)
        return InvalidLocation(detail)

    @property
    def ts_ms(self) -> int | None:
        """``ts`` as epoch ms (the validator converted it), None when not given."""
        return None if self.ts is None else int(self.ts)


def parse_ts_ms(value: int | float | str) -> int:
    """Epoch ms from ISO 8601 with an offset, or epoch seconds/milliseconds."""
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("ts must be ISO 8601 or epoch seconds/ms") from None
        if moment.tzinfo is None:
            raise ValueError("ts needs a UTC offset")
        return int(moment.timestamp() * 1000)
    if not math.isfinite(value):
        raise ValueError("ts must be ISO 8601 or epoch seconds/ms")
    return int(value if value >= _MS_THRESHOLD else value * 1000)


OfferId = Annotated[
    str,
    Field(min_length=1, max_length=64, description="The `offer_id` of an `offer` frame."),
]


class AcceptFrame(ClientFrame):
    """Driver: take the offer. Won: `ok` (with an `id`) and `trip.assigned`."""

    type: Literal["accept"]
    offer_id: OfferId

    @classmethod
    def refuse(cls, error: ErrorDetails) -> CoopError:
        return InvalidFrame("accept needs an offer_id")


class DeclineFrame(ClientFrame):
    """Driver: hand the offer back; the trip is dispatched again without this driver."""

    type: Literal["decline"]
    offer_id: OfferId

    @classmethod
    def refuse(cls, error: ErrorDetails) -> CoopError:
        return InvalidFrame("decline needs an offer_id")


class AckFrame(ClientFrame):
    """Both sockets: the highest event id the phone has processed (for resume)."""

    type: Literal["ack"]
    event_id: StrictInt = Field(ge=0)

    @classmethod
    def refuse(cls, error: ErrorDetails) -> CoopError:
        return InvalidFrame("ack needs a non-negative integer event_id")


DriverClientFrame: TypeAlias = Annotated[
    StatusFrame | LocationFrame | AcceptFrame | DeclineFrame | AckFrame,
    Field(discriminator="type"),
]
# A union of one: riders only listen, and acknowledge.
RiderClientFrame: TypeAlias = AckFrame


def frame_type(model: type[BaseModel]) -> str:
    """The ``type`` a frame model is for (its ``Literal``)."""
    annotation = model.model_fields["type"].annotation
    (tag,) = get_args(annotation)
    return str(tag)


def _where(error: ErrorDetails) -> str:
    return f"{'.'.join(str(p) for p in error['loc'])}: " if error["loc"] else ""


def members(union: Any) -> tuple[Any, ...]:
    """The frame models of a union alias, client or server (or the one model of a
    union of one)."""
    if isinstance(union, type):
        return (union,)
    (inner, *_) = get_args(union)
    return tuple(get_args(inner))


@dataclass(frozen=True)
class ClientFrames:
    """One socket's client frames: the model of each ``type``, and the detail of the
    ``unknown-frame-type`` error for any other (``{type}`` is filled in)."""

    models: Mapping[str, type[ClientFrame]]
    refusal: str = "unknown frame type {type!r}"

    @classmethod
    def of(cls, union: Any, *, refusal: str = "unknown frame type {type!r}") -> ClientFrames:
        return cls({frame_type(m): m for m in members(union)}, refusal)

    def parse(self, frame: Mapping[str, Any], context: Any = None) -> ClientFrame:
        """The frame as its model (its ``type`` already known to be a string), or the
        domain error it is refused with."""
        model = self.models.get(frame["type"])
        if model is None:
            raise UnknownFrameType(self.refusal.format(type=frame["type"]))
        try:
            return model.model_validate(frame, context=context)
        except ValidationError as exc:
            raise model.refuse(_first_by_field(model, exc.errors())) from None


def _first_by_field(model: type[BaseModel], errors: list[ErrorDetails]) -> ErrorDetails:
    """The error of the field declared first: the documented order of the checks."""
    order = {name: i for i, name in enumerate(model.model_fields)}
    return min(errors, key=lambda e: order.get(str(e["loc"][0]) if e["loc"] else "", -1))


# -- server → client ---------------------------------------------------------------------

EventId = Annotated[
    int,
    Field(
        ge=1,
        description="Increases by one per durable event for this person; resume with "
        "`?last_event_id=` or `ack`.",
    ),
]


class ServerFrame(BaseModel):
    """What the server sends. Durable events start with ``event_id``; replies and
    ephemeral frames carry none."""


class OkFrame(ServerFrame):
    """The answer to a client frame with an ``id`` that was taken."""

    type: Literal["ok"] = "ok"
    ref: FrameId


class ErrorFrame(ServerFrame):
    """A frame the server could not take (the socket stays open), or a refusal before a
    close (4401/4403)."""

    type: Literal["error"] = "error"
    code: str = Field(description="A stable slug (docs/websocket.md, Error codes).")
    detail: str = Field(description="For people.")
    ref: FrameId = None
    retry_after_s: int | None = Field(None, description="`rate-limited` only.")

    def wire(self) -> dict[str, Any]:
        """As sent: ``ref`` and ``retry_after_s`` only when they apply (``ref`` may be
        any JSON value but null, ``false`` and ``0`` included)."""
        frame: dict[str, Any] = {"type": "error", "code": self.code, "detail": self.detail}
        if self.retry_after_s is not None:
            frame["retry_after_s"] = self.retry_after_s
        if self.ref is not None:
            frame["ref"] = self.ref
        return frame


class ResyncFrame(ServerFrame):
    """Events were missed (or the ids restarted): refetch state over HTTP."""

    type: Literal["resync"] = "resync"
    detail: str


class TripUpdatedFrame(ServerFrame):
    """Rider: the trip's status changed."""

    event_id: EventId
    type: Literal["trip.updated"]
    trip: TripOut


class DriverLocationFrame(ServerFrame):
    """Rider, ephemeral: the assigned driver's accepted position."""

    type: Literal["driver.location"]
    trip_id: str
    lat: float
    lng: float
    eta_s: int | None = Field(description="Seconds to the driver's next stop; null: unknown.")


class OfferFrame(ServerFrame):
    """Driver: a trip offered, until ``expires_at``."""

    event_id: EventId
    type: Literal["offer"]
    offer_id: str
    trip_id: str
    pickup: Point
    dropoff: Point
    pickup_eta_s: int
    trip_distance_m: int
    trip_duration_s: int
    fare: FareOut
    expires_at: datetime


class OfferExpiredFrame(ServerFrame):
    """Driver: the offer's deadline passed without an answer."""

    event_id: EventId
    type: Literal["offer.expired"]
    offer_id: str


class OfferWithdrawnFrame(ServerFrame):
    """Driver: the trip was cancelled or expired, or the driver had no socket open."""

    event_id: EventId
    type: Literal["offer.withdrawn"]
    offer_id: str


class TripAssignedFrame(ServerFrame):
    """Driver: the answer to a won ``accept``."""

    event_id: EventId
    type: Literal["trip.assigned"]
    trip: TripOut


class TripCancelledFrame(ServerFrame):
    """Driver: the assigned trip was cancelled (by either side)."""

    event_id: EventId
    type: Literal["trip.cancelled"]
    trip: TripOut


RiderServerFrame: TypeAlias = Annotated[
    TripUpdatedFrame | DriverLocationFrame | OkFrame | ErrorFrame | ResyncFrame,
    Field(discriminator="type"),
]
