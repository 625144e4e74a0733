"""A socket fuzzer: hypothesis writes hostile frames for both sockets.

Malformed JSON, JSON that is not an object, no or non-string ``type``, unknown types,
wrong types and out-of-range values in every field the contract defines, locations out
of time order, binary garbage, and frames over the size cap. Every generated frame is
one the server must refuse, so for each the server must answer with exactly one
``error`` frame carrying the documented code (and the frame's ``id`` as ``ref`` when it
could be read), keep the socket open, and change nothing: the driver's live position
and status in Redis, the offer it holds and its trip in PostgreSQL, the rider's stored
ack. An oversized frame closes the socket with 1009. Afterwards the server process is
still up and still serves.

The sockets live on an event loop in a thread of its own, so hypothesis (synchronous)
drives one long-lived setup: a driver holding a real pending offer, kept connected by an
anchor socket so that the fuzzing sockets coming and going never take it offline.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis import Redis as SyncRedis
from websockets.exceptions import ConnectionClosed

from core.settings import Settings
from server.harness import Server, libpq_url, start_server
from tests.fixtures.invariants import offers_of, trip_row
from tests.fixtures.phones import CHELSEA, MIDTOWN, NEAR_MIDTOWN, Socket, new_driver, new_rider
from tests.fixtures.phones import open_socket as _open_socket
from tests.fixtures.servers import starts_server

pytestmark = pytest.mark.e2e

T = TypeVar("T")
MAX_FRAME_BYTES = 16 * 1024
DRIVER_TYPES = {"status", "location", "accept", "decline", "ack"}
EXAMPLES = 100
# A fix time an hour ahead of the clock at import: "in the future" for the whole run
# (the skew allowed is seconds), and fixed, so hypothesis draws the same way each time.
FUTURE_MS = int(time.time() * 1000) + 3_600_000
# Frames refused per socket and code over the module, printed at the end (-s).
REFUSED: Counter[str] = Counter()


class Loop:
    """An event loop in a thread: coroutines from synchronous hypothesis tests run on
    it, next to sockets that outlive one example."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Awaitable[T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@dataclass
class Stage:
    server: Server
    proc: Any
    loop: Loop
    driver_id: str
    driver_token: str
    rider_id: str
    rider_token: str
    trip_id: str
    offer_id: str
    last_ts_ms: int
    anchor: Any
    anchor_cm: Any


@pytest.fixture(scope="module")
@starts_server
def stage(test_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stage]:
    settings_ = test_settings.model_copy(
        update={
            "redis_prefix": f"{test_settings.redis_prefix}sockfuzz:",
            "offer_timeout_s": 900,
            # A request is offered only while it outlives an offer (the planner's expiry
            # skip), so it must live longer than one.
            "trip_request_timeout_s": 1800.0,
            # Hundreds of location frames in seconds: the rate limit (tested with the
            # security tests) would answer some of them before their content is read.
            "location_rate_per_s": 100_000.0,
            "location_burst": 1_000_000,
        }
    )
    server = start_server(settings_, tmp_path_factory.mktemp("sockfuzz") / "server.log")
    loop = Loop()

    async def setup() -> Stage:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
            driver_id, token = await new_driver(http, server)
            rider_id, rider = await new_rider(http)
            cm = _open_socket(server, "/v1/drivers/ws", token)
            anchor = await cm.__aenter__()
            await anchor.call({"type": "status", "status": "online"})
            ts = int(time.time() * 1000)
            await anchor.call({"type": "location", **NEAR_MIDTOWN, "ts": ts})
            trip = (
                await http.post(
                    "/v1/trips", json={"pickup": MIDTOWN, "dropoff": CHELSEA}, headers=rider
                )
            ).json()
            offer = await anchor.expect("offer", trip_id=trip["id"])
        return Stage(
            server,
            server.process.popen,
            loop,
            driver_id,
            token,
            rider_id,
            rider["Authorization"][7:],
            trip["id"],
            offer["offer_id"],
            ts,
            anchor,
            cm,
        )

    stage_ = loop.run(setup())
    try:
        yield stage_
    finally:
        loop.run(stage_.anchor_cm.__aexit__(None, None, None))
        loop.close()
        server.stop()


# --- what a hostile phone sends -----------------------------------------------------

ids = st.one_of(st.integers(-(2**40), 2**40), st.text(max_size=12), st.booleans())
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**60), 2**60), st.text(max_size=20)
)
not_numbers = st.one_of(st.none(), st.booleans(), st.text(max_size=10), st.lists(st.integers()))


def with_id(frame: dict[str, Any], frame_id: Any) -> tuple[str, Any]:
    if frame_id is None:
        return json.dumps(frame), None
    return json.dumps({**frame, "id": frame_id}), frame_id


@st.composite
def unreadable(draw: st.DrawFn) -> tuple[str | bytes, str, Any]:
    """Not JSON, not an object, or no string ``type``: ``invalid-frame``, no ``ref``."""
    kind = draw(st.sampled_from(["text", "bytes", "scalar", "array", "no-type", "bad-type"]))
    if kind == "text":
        text = draw(st.text(min_size=1, max_size=200).filter(_not_json))
        return text, "invalid-frame", None
    if kind == "bytes":
        data = draw(st.binary(min_size=1, max_size=200).filter(_not_json))
        return data, "invalid-frame", None
    if kind == "scalar":
        return json.dumps(draw(json_scalars)), "invalid-frame", None
    if kind == "array":
        return json.dumps(draw(st.lists(json_scalars, max_size=5))), "invalid-frame", None
    body = draw(st.dictionaries(st.text(max_size=8).filter(lambda k: k != "type"), json_scalars))
    if kind == "bad-type":
        body["type"] = draw(not_numbers.filter(lambda v: not isinstance(v, str)))
    return json.dumps({**body, "id": draw(ids)}), "invalid-frame", None


def _not_json(data: str | bytes) -> bool:
    try:
        json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return True
    return False


@st.composite
def driver_frames(draw: st.DrawFn, last_ts_ms: int) -> tuple[str | bytes, str, Any]:
    """One frame the driver socket must refuse, the code it must answer with, and the
    ``ref`` it must carry."""
    kind = draw(
        st.sampled_from(
            ["unreadable", "unknown", "status", "coords", "ts", "range", "stale", "offer", "ack"]
        )
    )
    frame_id = draw(st.one_of(st.none(), ids))
    if kind == "unreadable":
        return draw(unreadable())
    if kind == "unknown":
        kind_name = draw(st.text(max_size=30).filter(lambda t: t not in DRIVER_TYPES))
        text, ref = with_id({"type": kind_name}, frame_id)
        return text, "unknown-frame-type", ref
    if kind == "status":
        value = draw(st.one_of(json_scalars, st.lists(st.integers(), max_size=2)))
        if value in ("online", "offline"):
            value = "away"
        text, ref = with_id({"type": "status", "status": value}, frame_id)
        return text, "invalid-frame", ref
    if kind == "coords":
        lat = draw(st.one_of(not_numbers, st.floats(allow_nan=False, allow_infinity=False)))
        lng = draw(st.one_of(not_numbers, st.floats(allow_nan=False, allow_infinity=False)))
        ok_lat = isinstance(lat, float) and -90 <= lat <= 90
        ok_lng = isinstance(lng, float) and -180 <= lng <= 180
        if ok_lat and ok_lng:
            lat = 90.5
        frame: dict[str, Any] = {"type": "location", "lat": lat, "lng": lng}
        if draw(st.booleans()):
            frame.pop(draw(st.sampled_from(["lat", "lng"])))
        text, ref = with_id(frame, frame_id)
        return text, "invalid-coordinates", ref
    if kind == "ts":
        ts = draw(
            st.one_of(
                st.text(max_size=25),
                st.booleans(),
                st.lists(st.integers(), max_size=2),
                st.just("2026-11-22T01:15:04"),  # no UTC offset
                st.integers(FUTURE_MS, 2**52),  # in the future
            )
        )
        text, ref = with_id({"type": "location", **NEAR_MIDTOWN, "ts": ts}, frame_id)
        return text, "invalid-location", ref
    if kind == "range":
        field = draw(st.sampled_from(["heading", "speed_mps", "accuracy_m"]))
        bad = draw(
            st.one_of(
                st.text(max_size=5),
                st.booleans(),
                st.floats(min_value=400, max_value=1e300),
            )
        )
        code = "inaccurate-location" if field == "accuracy_m" and not _not_num(bad) else None
        text, ref = with_id({"type": "location", **NEAR_MIDTOWN, field: bad}, frame_id)
        return text, code or "invalid-location", ref
    if kind == "stale":
        ts = draw(st.integers(last_ts_ms - 10**9, last_ts_ms))  # not after the last fix
        text, ref = with_id({"type": "location", **NEAR_MIDTOWN, "ts": ts}, frame_id)
        return text, "stale-location", ref
    if kind == "offer":
        verb = draw(st.sampled_from(["accept", "decline"]))
        offer_id = draw(
            st.one_of(
                st.none(),
                st.just(""),
                not_numbers.filter(lambda v: not isinstance(v, str)),
                st.text(min_size=65, max_size=100),
                st.text(min_size=1, max_size=64),
            )
        )
        frame = {"type": verb}
        if offer_id is not None:
            frame["offer_id"] = offer_id
        valid_shape = isinstance(offer_id, str) and 1 <= len(offer_id) <= 64
        text, ref = with_id(frame, frame_id)
        return text, "offer-not-found" if valid_shape else "invalid-frame", ref
    bad_ack = draw(
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(max_value=-1),
            st.text(max_size=5),
            st.floats(allow_nan=False, allow_infinity=False),
        )
    )
    text, ref = with_id({"type": "ack", "event_id": bad_ack}, frame_id)
    return text, "invalid-frame", ref


def _not_num(value: Any) -> bool:
    return isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)


@st.composite
def rider_frames(draw: st.DrawFn) -> tuple[str | bytes, str, Any]:
    kind = draw(st.sampled_from(["unreadable", "not-ack", "bad-ack"]))
    frame_id = draw(st.one_of(st.none(), ids))
    if kind == "unreadable":
        return draw(unreadable())
    if kind == "not-ack":
        name = draw(st.one_of(st.sampled_from(sorted(DRIVER_TYPES - {"ack"})), st.text()))
        if name == "ack":
            name = "acknowledge"
        text, ref = with_id({"type": name, "lat": 1, "offer_id": "x"}, frame_id)
        return text, "unknown-frame-type", ref
    bad_ack = draw(st.one_of(st.none(), st.booleans(), st.integers(max_value=-1), st.text()))
    text, ref = with_id({"type": "ack", "event_id": bad_ack}, frame_id)
    return text, "invalid-frame", ref


# --- the checks ---------------------------------------------------------------------


def _redis(stage: Stage) -> SyncRedis:
    return SyncRedis.from_url(stage.server.settings.redis_url, decode_responses=True)


def driver_state(stage: Stage) -> dict[str, str]:
    """The driver's live index entry, without the location rate limit's bucket (every
    location frame counts against it, taken or refused: that is the limit working, not a
    change of the driver's state). Its socket count is another key (fuzzing sockets come
    and go)."""
    prefix = stage.server.settings.redis_prefix
    with _redis(stage) as r:
        state = r.hgetall(f"{prefix}drv:{stage.driver_id}")
        held = r.get(f"{prefix}offer:drv:{stage.driver_id}")
        in_cell = r.zscore(f"{prefix}seen", stage.driver_id)
    for bookkeeping in ("rl_t", "rl_at"):
        state.pop(bookkeeping, None)
    return {**state, "held": str(held), "seen_score": str(in_cell)}


async def refuse_all(
    stage: Stage, path: str, token: str, frames: list[tuple[str | bytes, str, Any]]
) -> None:
    async with _open_socket(stage.server, path, token) as ws:
        for data, code, ref in frames:
            await ws.conn.send(data)
            reply = await ws.recv()
            assert reply["type"] == "error", (data, reply)
            assert reply["code"] == code, (data, reply)
            assert reply.get("ref") == ref, (data, reply)
            assert set(reply) <= {"type", "code", "detail", "ref"}
            REFUSED[f"{path} {code}"] += 1
        # Still open, still answering.
        probe = await ws.call({"type": "ack", "event_id": "no"})
        assert probe["code"] == "invalid-frame"
        assert [f for f in ws.frames if f["type"] != "error"] == []


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
@given(data=st.data())
def test_driver_socket_refuses_hostile_frames(stage: Stage, data: st.DataObject) -> None:
    frames = data.draw(st.lists(driver_frames(stage.last_ts_ms), min_size=1, max_size=12))
    before = driver_state(stage)
    stage.loop.run(refuse_all(stage, "/v1/drivers/ws", stage.driver_token, frames))
    assert driver_state(stage) == before


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
@given(data=st.data())
def test_rider_socket_refuses_hostile_frames(stage: Stage, data: st.DataObject) -> None:
    frames = data.draw(st.lists(rider_frames(), min_size=1, max_size=12))
    ack = f"{stage.server.settings.redis_prefix}evseq:rider:{stage.rider_id}:ack"
    with _redis(stage) as r:
        before = r.get(ack)
    stage.loop.run(refuse_all(stage, "/v1/riders/ws", stage.rider_token, frames))
    with _redis(stage) as r:
        assert r.get(ack) == before


@pytest.mark.parametrize("path", ["/v1/drivers/ws", "/v1/riders/ws"])
@pytest.mark.parametrize("binary", [False, True])
def test_oversized_frames_close_with_1009(stage: Stage, path: str, binary: bool) -> None:
    token = stage.driver_token if path == "/v1/drivers/ws" else stage.rider_token
    before = driver_state(stage)
    # Valid JSON, a known type, just too big: the size cap comes before anything else.
    frame = json.dumps({"type": "location", **NEAR_MIDTOWN, "pad": "x" * MAX_FRAME_BYTES})

    async def send_big() -> int | None:
        async with _open_socket(stage.server, path, token) as ws:
            await ws.conn.send(frame.encode() if binary else frame)
            with pytest.raises(ConnectionClosed) as closed:
                await ws.conn.recv()
            assert closed.value.rcvd is not None
            return closed.value.rcvd.code

    assert stage.loop.run(send_big()) == 1009
    assert driver_state(stage) == before

    # One byte under the cap is read (and refused for what it says, not its size).
    small = json.dumps({"type": "nope", "pad": ""})
    small = small.replace('""', '"' + "x" * (MAX_FRAME_BYTES - len(small)) + '"')
    assert len(small) == MAX_FRAME_BYTES

    async def send_small() -> dict[str, Any]:
        async with _open_socket(stage.server, path, token) as ws:
            await ws.conn.send(small)
            return await ws.recv()

    assert stage.loop.run(send_small())["code"] == "unknown-frame-type"


def test_after_the_fuzzing_nothing_changed_and_the_server_serves(stage: Stage) -> None:
    """Runs last in this module: the process never died, the offer and trip are as they
    were, and the driver can still take the offer."""
    assert stage.proc.poll() is None
    dsn = libpq_url(stage.server.settings.database_url)

    async def check() -> None:
        made = await offers_of(dsn, stage.trip_id)
        assert [(o["id"], o["status"]) for o in made] == [(stage.offer_id, "pending")]
        assert (await trip_row(dsn, stage.trip_id))["status"] == "requested"
        async with httpx.AsyncClient(base_url=stage.server.base_url, timeout=10) as http:
            assert (await http.get("/healthz")).status_code == 200
        anchor: Socket = stage.anchor
        reply = await anchor.call({"type": "accept", "offer_id": stage.offer_id})
        assert reply["type"] == "ok", reply
        assigned = await anchor.expect("trip.assigned")
        assert assigned["trip"]["driver_id"] == stage.driver_id

    stage.loop.run(check())
    print(f"socket fuzzer: {sum(REFUSED.values())} hostile frames refused: {dict(REFUSED)}")
