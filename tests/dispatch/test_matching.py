"""dispatch.batch.matching.nearest_first: greedy in request order, against a reference."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from dispatch.batch.matching import nearest_first
from dispatch.batch.types import Assignment, Candidate, Request

DRIVERS = [f"drv_{i}" for i in range(8)]

edges = st.builds(
    Candidate,
    driver_id=st.sampled_from(DRIVERS),
    pickup_eta_s=st.integers(min_value=0, max_value=40),
)


@st.composite
def request_lists(draw: st.DrawFn) -> list[Request]:
    n = draw(st.integers(min_value=0, max_value=10))
    return [Request(f"trp_{i}", tuple(draw(st.lists(edges, max_size=6)))) for i in range(n)]


def reference(requests: list[Request]) -> list[Assignment]:
    """The policy, written plainly: in request order, the nearest (eta, then driver id)
    candidate nobody has taken yet."""
    taken: set[str] = set()
    out: list[Assignment] = []
    for request in requests:
        free = [e for e in request.candidates if e.driver_id not in taken]
        if not free:
            continue
        best = min(free, key=lambda e: (e.pickup_eta_s, e.driver_id))
        taken.add(best.driver_id)
        out.append(Assignment(request.trip_id, best.driver_id, best.pickup_eta_s))
    return out


PROPERTY_SETTINGS = settings(max_examples=200, deadline=None)


@PROPERTY_SETTINGS
@given(requests=request_lists())
def test_never_a_driver_twice_nor_a_trip_twice(requests: list[Request]) -> None:
    chosen = nearest_first(requests)
    drivers = Counter(a.driver_id for a in chosen)
    trips = Counter(a.trip_id for a in chosen)
    assert all(n == 1 for n in drivers.values())
    assert all(n == 1 for n in trips.values())


@PROPERTY_SETTINGS
@given(requests=request_lists())
def test_only_existing_edges_are_used(requests: list[Request]) -> None:
    by_trip = {r.trip_id: set(r.candidates) for r in requests}
    for a in nearest_first(requests):
        assert Candidate(a.driver_id, a.pickup_eta_s) in by_trip[a.trip_id]


@PROPERTY_SETTINGS
@given(requests=request_lists())
def test_each_request_gets_its_nearest_free_candidate_in_request_order(
    requests: list[Request],
) -> None:
    assert nearest_first(requests) == reference(requests)


@PROPERTY_SETTINGS
@given(requests=request_lists())
def test_a_request_left_out_had_no_free_candidate(requests: list[Request]) -> None:
    chosen = nearest_first(requests)
    assigned = {a.trip_id for a in chosen}
    # Assignments come out in request order.
    order = [r.trip_id for r in requests if r.trip_id in assigned]
    assert [a.trip_id for a in chosen] == order
    taken_before: set[str] = set()
    by_trip = {a.trip_id: a for a in chosen}
    for request in requests:
        if request.trip_id in by_trip:
            taken_before.add(by_trip[request.trip_id].driver_id)
        else:
            assert all(e.driver_id in taken_before for e in request.candidates)


def test_examples() -> None:
    requests = [
        Request("t1", (Candidate("a", 300), Candidate("b", 120), Candidate("c", 60))),
        Request("t2", (Candidate("c", 30), Candidate("b", 90))),
        Request("t3", (Candidate("c", 10), Candidate("b", 20))),
        Request("t4", (Candidate("a", 5),)),
        Request("t5", ()),
    ]
    assert nearest_first(requests) == [
        Assignment("t1", "c", 60),  # t1 is first, so it wins c though t2 is nearer to c
        Assignment("t2", "b", 90),
        # t3: both b and c are taken
        Assignment("t4", "a", 5),
    ]


def test_ties_break_by_driver_id() -> None:
    requests = [Request("t1", (Candidate("z", 60), Candidate("m", 60), Candidate("q", 60)))]
    assert nearest_first(requests) == [Assignment("t1", "m", 60)]


def test_empty_input() -> None:
    assert nearest_first([]) == []
