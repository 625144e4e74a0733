"""Structured logs: JSON lines with the request id and the trip id, and no tokens."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from core import metrics
from core.events import Event
from dispatch import telemetry
from server.logs import JsonFormatter, request_id


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def logged(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_line_is_json_with_the_request_id_and_extras(lines: io.StringIO) -> None:
    logging.getLogger("t").info("outside any request", extra={"n": 1})
    token = request_id.set("req-42")
    try:
        logging.getLogger("t").warning("inside %s", "one", extra={"trip_id": "trp_1"})
    finally:
        request_id.reset(token)
    first, second = logged(lines)
    assert first["msg"] == "outside any request" and first["n"] == 1
    assert "request_id" not in first
    assert second["msg"] == "inside one" and second["level"] == "warning"
    assert second["request_id"] == "req-42" and second["trip_id"] == "trp_1"


def test_trip_and_offer_outcomes_are_counted_and_logged_with_the_trip_id(
    lines: io.StringIO,
) -> None:
    def count(metric: object, label: str) -> float:
        value = metrics.REGISTRY.get_sample_value(metric, {"status": label})  # type: ignore[arg-type]
        return value or 0.0

    completed = count("coop_trips_total", "completed")
    expired_offers = (
        metrics.REGISTRY.get_sample_value("coop_offers_total", {"outcome": "expired"}) or 0.0
    )
    trip = {"id": "trp_9", "status": "completed", "rider_id": "rdr_1", "driver_id": "mbr_2"}
    telemetry.observe(
        [
            Event("rider", "rdr_1", {"type": "trip.updated", "trip": trip}),
            Event("driver", "mbr_2", {"type": "trip.assigned", "trip": trip}),  # not a change
            Event("driver", "mbr_2", {"type": "offer.expired", "offer_id": "off_1"}),
        ]
    )
    assert count("coop_trips_total", "completed") == completed + 1
    assert (
        metrics.REGISTRY.get_sample_value("coop_offers_total", {"outcome": "expired"})
        == expired_offers + 1
    )
    trip_line, offer_line = logged(lines)
    assert trip_line["trip_id"] == "trp_9" and trip_line["status"] == "completed"
    assert trip_line["driver_id"] == "mbr_2"
    assert offer_line["offer_id"] == "off_1" and offer_line["outcome"] == "expired"


def test_a_redacted_socket_path_leaves_the_line_json(lines: io.StringIO) -> None:
    """uvicorn logs a socket as ``"WebSocket /path?token=…" [accepted]``: the quote after
    the token is escaped in the JSON line, and redaction keeps it so."""
    logging.getLogger("uvicorn.error").info(
        '%s - "WebSocket %s" [accepted]', "127.0.0.31:0", "/v1/riders/ws?token=abc.def.ghi"
    )
    (line,) = logged(lines)
    assert line["msg"] == '127.0.0.31:0 - "WebSocket /v1/riders/ws?token=[redacted]" [accepted]'
