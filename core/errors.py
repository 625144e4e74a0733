"""Domain errors. They say what went wrong in the co-op's words and carry no HTTP status:
``server.problems`` maps each kind to problem+json, and the sockets map them to ``error``
frames, in one table each.

Every error has a stable ``slug`` (the problem ``type`` and the socket ``code``).
"""

from __future__ import annotations


class CoopError(Exception):
    """Base of every error the domain raises on purpose."""

    slug: str = "error"
    title: str = "Error"

    def __init__(self, detail: str | None = None) -> None:
        self.detail = detail or self.title
        super().__init__(self.detail)


# -- kinds: the HTTP layer maps these ---------------------------------------------------


class InvalidInput(CoopError):
    slug = "invalid-input"
    title = "Invalid input"


class NotAuthenticated(CoopError):
    slug = "not-authenticated"
    title = "Valid credentials are required"


class Forbidden(CoopError):
    slug = "forbidden"
    title = "Not allowed for this role or resource"


class NotFound(CoopError):
    slug = "not-found"
    title = "No such resource"


class Conflict(CoopError):
    slug = "conflict"
    title = "The resource is not in a state that allows this"


class RateLimited(CoopError):
    slug = "rate-limited"
    title = "Too many requests"

    def __init__(self, detail: str | None = None, *, retry_after_s: int = 1) -> None:
        super().__init__(detail)
        # Whole seconds until the next attempt can succeed (HTTP ``Retry-After``).
        self.retry_after_s = max(1, retry_after_s)


class Unavailable(CoopError):
    slug = "service-unavailable"
    title = "A backing service is unavailable"


# -- specific errors -------------------------------------------------------------------


class InvalidCoordinates(InvalidInput):
    slug = "invalid-coordinates"
    title = "Coordinates are out of range or not numbers"


class OutsideServiceArea(InvalidInput):
    slug = "outside-service-area"
    title = "The pickup is outside every service area"


class InvalidFrame(InvalidInput):
    slug = "invalid-frame"
    title = "The frame could not be understood"


class UnknownFrameType(InvalidInput):
    slug = "unknown-frame-type"
    title = "Unknown frame type"


class InvalidLocation(InvalidInput):
    slug = "invalid-location"
    title = "The location frame has an invalid field"


class InvalidPeriod(InvalidInput):
    slug = "invalid-period"
    title = "A period is a month, written YYYY-MM"


class StaleLocation(InvalidInput):
    slug = "stale-location"
    title = "The location is older than one already taken"


class InaccurateLocation(InvalidInput):
    slug = "inaccurate-location"
    title = "The location fix is too inaccurate to use"


class InvalidPolygon(InvalidInput):
    slug = "invalid-polygon"
    title = "The polygon is not a valid, simple GeoJSON Polygon"


class IdempotencyKeyReused(InvalidInput):
    slug = "idempotency-key-reused"
    title = "This Idempotency-Key was used for a different request"


class WrongRole(Forbidden):
    slug = "wrong-role"
    title = "This action is not open to your role"


class NotYourTrip(Forbidden):
    slug = "not-your-trip"
    title = "This trip belongs to someone else"


class NotYourOffer(Forbidden):
    slug = "not-your-offer"
    title = "This offer was made to another driver"


class TripNotFound(NotFound):
    slug = "trip-not-found"
    title = "No such trip"


class OfferNotFound(NotFound):
    slug = "offer-not-found"
    title = "No such offer"


class MemberNotFound(NotFound):
    slug = "member-not-found"
    title = "No such member"


class RiderNotFound(NotFound):
    slug = "rider-not-found"
    title = "No such rider"


class MembershipEnded(Conflict):
    slug = "membership-ended"
    title = "A removed member cannot be reinstated"


class ActiveTripExists(Conflict):
    slug = "active-trip-exists"
    title = "The rider already has an active trip"


class IllegalTransition(Conflict):
    slug = "illegal-transition"
    title = "The trip cannot move to that status from its current one"


class ReceiptNotReady(Conflict):
    slug = "receipt-not-ready"
    title = "A receipt exists only for a completed trip"


class OfferExpired(Conflict):
    slug = "offer-expired"
    title = "The offer has expired"


class OfferWithdrawn(Conflict):
    slug = "offer-withdrawn"
    title = "The offer was withdrawn"


class NotOnline(Conflict):
    slug = "not-online"
    title = "Go online before sending this"


class PositionUnknown(Conflict):
    slug = "position-unknown"
    title = "Send a location first: the live index has no position for this driver"


class TokenRevoked(NotAuthenticated):
    slug = "token-revoked"
    title = "This token has been revoked"


class TokenExpired(NotAuthenticated):
    slug = "token-expired"
    title = "This token has expired"


class MemberRemoved(NotAuthenticated):
    slug = "member-removed"
    title = "This member is no longer in good standing"


# -- governance (fares.governance) and quotes ------------------------------------------


class ClosesTooSoon(InvalidInput):
    slug = "closes-too-soon"
    title = "A vote must stay open at least the bylaws' minimum window"


class QuoteInvalid(InvalidInput):
    slug = "quote-invalid"
    title = "The quote is expired, someone else's, or for other points"


class NotEligible(Forbidden):
    slug = "not-eligible"
    title = "Only members in good standing when the proposal opened may vote on it"


class ProposalNotFound(NotFound):
    slug = "proposal-not-found"
    title = "No such proposal"


class VotingClosed(Conflict):
    slug = "voting-closed"
    title = "Voting on this proposal has closed"


# -- co-op accounts (fares.ledger) -------------------------------------------------------


class PeriodClosed(Conflict):
    slug = "period-closed"
    title = "The period is closed; its books cannot change"


class BudgetNotFound(NotFound):
    slug = "budget-not-found"
    title = "No budget has been published for this period"


class PeriodNotStarted(Conflict):
    slug = "period-not-started"
    title = "A period cannot be closed before it has begun"
