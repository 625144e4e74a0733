"""The socket frame models (web/frames.py): a client frame is parsed by its socket's
union, and refused with the error code docs/websocket.md gives, in its order."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter

from core.errors import CoopError
from driver_api.frames import DriverServerFrame
from web.frames import (
    AckFrame,
    ClientFrames,
    DriverClientFrame,
    ErrorFrame,
    LocationFrame,
    LocationLimits,
    RiderClientFrame,
    RiderServerFrame,
)

NOW_MS = 1_795_310_104_250
LIMITS = LocationLimits(now_ms=NOW_MS, max_clock_skew_s=5, max_accuracy_m=200)
DRIVER = ClientFrames.of(DriverClientFrame)
RIDER = ClientFrames.of(RiderClientFrame, refusal="riders send only 'ack' frames, not {type!r}")
HERE = {"type": "location", "lat": 40.75, "lng": -73.98}


def refusal(frames: ClientFrames, frame: dict[str, Any]) -> str:
    with pytest.raises(CoopError) as caught:
        frames.parse(frame, LIMITS)
    return caught.value.slug


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ({"type": "teleport"}, "unknown-frame-type"),
        ({"type": "status", "status": "napping"}, "invalid-frame"),
        ({"type": "status"}, "invalid-frame"),
        ({"type": "location", "lat": 91, "lng": 0}, "invalid-coordinates"),
        ({"type": "location", "lat": True, "lng": 0}, "invalid-coordinates"),
        ({"type": "location", "lat": 40.75}, "invalid-coordinates"),
        ({**HERE, "ts": "2026-11-22T01:15:04"}, "invalid-location"),  # no UTC offset
        ({**HERE, "ts": True}, "invalid-location"),
        ({**HERE, "ts": NOW_MS + 60_000}, "invalid-location"),  # in the future
        ({**HERE, "accuracy_m": -1}, "inaccurate-location"),
        ({**HERE, "accuracy_m": 201}, "inaccurate-location"),
        ({**HERE, "accuracy_m": "8"}, "invalid-location"),
        ({**HERE, "heading": 361}, "invalid-location"),
        ({**HERE, "speed_mps": False}, "invalid-location"),
        ({"type": "accept"}, "invalid-frame"),
        ({"type": "decline", "offer_id": ""}, "invalid-frame"),
        ({"type": "accept", "offer_id": "o" * 65}, "invalid-frame"),
        ({"type": "ack", "event_id": 3.0}, "invalid-frame"),
        ({"type": "ack", "event_id": -1}, "invalid-frame"),
    ],
)
def test_driver_frames_are_refused_with_the_documented_code(
    frame: dict[str, Any], code: str
) -> None:
    assert refusal(DRIVER, frame) == code


def test_the_first_bad_field_in_the_documented_order_decides() -> None:
    # Coordinates before ts before accuracy (docs/websocket.md, `location`).
    assert refusal(DRIVER, {**HERE, "lat": 100, "ts": "soon", "accuracy_m": -1}) == (
        "invalid-coordinates"
    )
    assert refusal(DRIVER, {**HERE, "ts": "soon", "accuracy_m": -1}) == "invalid-location"


def test_a_location_is_parsed_with_its_fix_time_in_ms() -> None:
    iso = DRIVER.parse({**HERE, "ts": "2026-11-22T01:15:04.250Z", "id": [1], "extra": 1}, LIMITS)
    assert isinstance(iso, LocationFrame) and iso.ts_ms == NOW_MS and iso.id == [1]
    seconds = DRIVER.parse({**HERE, "ts": 1_795_310_104}, LIMITS)
    assert isinstance(seconds, LocationFrame) and seconds.ts_ms == 1_795_310_104_000
    assert isinstance(missing := DRIVER.parse(HERE, LIMITS), LocationFrame)
    assert missing.ts_ms is None


def test_riders_send_only_acks() -> None:
    assert refusal(RIDER, {"type": "status", "status": "online"}) == "unknown-frame-type"
    assert refusal(RIDER, {"type": "ack", "event_id": "one"}) == "invalid-frame"
    ack = RIDER.parse({"type": "ack", "event_id": 42, "id": False})
    assert isinstance(ack, AckFrame) and ack.event_id == 42 and ack.id is False


def test_error_frames_carry_ref_and_retry_only_when_they_apply() -> None:
    assert ErrorFrame(code="offer-expired", detail="late").wire() == {
        "type": "error",
        "code": "offer-expired",
        "detail": "late",
    }
    assert ErrorFrame(code="rate-limited", detail="d", ref=0, retry_after_s=1).wire() == {
        "type": "error",
        "code": "rate-limited",
        "detail": "d",
        "retry_after_s": 1,
        "ref": 0,
    }


def test_server_unions_read_the_documented_examples() -> None:
    """Examples from docs/websocket.md, through each socket's server-frame union."""
    fare = {
        "total_cents": 800,
        "currency": "USD",
        "breakdown": {
            "base_cents": 289,
            "distance_cents": 282,
            "time_cents": 229,
            "cost_recovery_cents": 0,
            "platform_commission_cents": 0,
            "minimum_topup_cents": 39,
        },
    }
    offer = {
        "event_id": 17,
        "type": "offer",
        "offer_id": "ofr_1",
        "trip_id": "trp_1",
        "pickup": {"lat": 40.7549, "lng": -73.984},
        "dropoff": {"lat": 40.7465, "lng": -74.0014},
        "pickup_eta_s": 61,
        "trip_distance_m": 2346,
        "trip_duration_s": 392,
        "fare": fare,
        "expires_at": "2026-11-22T01:15:15.120000+00:00",
    }
    driver = TypeAdapter(DriverServerFrame)
    assert type(driver.validate_python(offer)).__name__ == "OfferFrame"
    with pytest.raises(ValueError, match=r"trip\.updated"):
        driver.validate_python({"type": "trip.updated", "event_id": 1, "trip": {}})
    rider = TypeAdapter(RiderServerFrame)
    location = {"type": "driver.location", "trip_id": "trp_1", "lat": 1, "lng": 2, "eta_s": None}
    assert type(rider.validate_python(location)).__name__ == "DriverLocationFrame"
