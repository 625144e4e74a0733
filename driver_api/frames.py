"""The frames the server sends on the driver socket (``docs/websocket.md``): the shared
ones from ``web.frames``, and the two that carry the driver API's own shapes, a fare
proposal and the demand map."""

from __future__ import annotations

from typing import Annotated, Literal, TypeAlias

from pydantic import Field

from driver_api.governance import ProposalOut
from driver_api.schemas import DemandMapOut
from web.frames import (
    ErrorFrame,
    EventId,
    OfferExpiredFrame,
    OfferFrame,
    OfferWithdrawnFrame,
    OkFrame,
    ResyncFrame,
    ServerFrame,
    TripAssignedFrame,
    TripCancelledFrame,
)


class ProposalOpenedFrame(ServerFrame):
    """To every member eligible to vote on it, right after it is proposed."""

    event_id: EventId
    type: Literal["proposal.opened"]
    proposal: ProposalOut


class ProposalClosedFrame(ServerFrame):
    """To every member in good standing, when the vote closes (adopted or rejected)."""

    event_id: EventId
    type: Literal["proposal.closed"]
    proposal: ProposalOut


class DemandMapFrame(DemandMapOut):
    """Ephemeral advice to an idle driver: where to wait (``GET
    /v1/drivers/me/demand-map`` with a ``type``)."""

    type: Literal["demand.map"]


DriverServerFrame: TypeAlias = Annotated[
    OfferFrame
    | OfferExpiredFrame
    | OfferWithdrawnFrame
    | TripAssignedFrame
    | TripCancelledFrame
    | ProposalOpenedFrame
    | ProposalClosedFrame
    | DemandMapFrame
    | OkFrame
    | ErrorFrame
    | ResyncFrame,
    Field(discriminator="type"),
]
