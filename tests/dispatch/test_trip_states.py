"""dispatch.trip_states: the wire contract's state machine, every pair of statuses."""

from __future__ import annotations

import itertools

import pytest

from core.errors import IllegalTransition
from dispatch import trip_states
from dispatch.trip_states import check

STATUSES = ("requested", "assigned", "arrived", "in_progress", "completed", "cancelled", "expired")

# Written out from api.md, independently of trip_states.TRANSITIONS.
CONTRACT = {
    ("requested", "assigned"),
    ("assigned", "arrived"),
    ("arrived", "in_progress"),
    ("in_progress", "completed"),
    ("requested", "cancelled"),
    ("assigned", "cancelled"),
    ("arrived", "cancelled"),
    ("requested", "expired"),
}
FINAL = ("completed", "cancelled", "expired")

ALL_PAIRS = list(itertools.product(STATUSES, STATUSES))
REFUSED = [pair for pair in ALL_PAIRS if pair not in CONTRACT]


def test_the_module_knows_exactly_the_contract_statuses() -> None:
    assert set(trip_states.TRANSITIONS) == set(STATUSES)
    assert set(trip_states.FINAL) == set(FINAL)
    assert frozenset(STATUSES) - frozenset(FINAL) == trip_states.ACTIVE


@pytest.mark.parametrize(("current", "target"), sorted(CONTRACT))
def test_contract_transition_is_allowed(current: str, target: str) -> None:
    check(current, target)  # must not raise
    assert trip_states.can_move(current, target)


@pytest.mark.parametrize(("current", "target"), REFUSED)
def test_any_other_transition_is_refused(current: str, target: str) -> None:
    assert not trip_states.can_move(current, target)
    with pytest.raises(IllegalTransition) as info:
        check(current, target)
    assert current in str(info.value) and target in str(info.value)
    assert info.value.slug == "illegal-transition"


def test_every_pair_was_classified() -> None:
    assert len(ALL_PAIRS) == 49
    assert len(REFUSED) == 49 - 8


@pytest.mark.parametrize("final", FINAL)
def test_final_statuses_have_no_way_out(final: str) -> None:
    assert trip_states.TRANSITIONS[final] == frozenset()
    for target in STATUSES:
        with pytest.raises(IllegalTransition):
            check(final, target)


@pytest.mark.parametrize("target", ["requested", "bogus", ""])
def test_unknown_or_initial_targets_are_refused(target: str) -> None:
    for current in STATUSES:
        with pytest.raises(IllegalTransition):
            check(current, target)


def test_unknown_current_status_is_refused() -> None:
    with pytest.raises(IllegalTransition):
        check("bogus", "assigned")


def test_sources_of_matches_the_contract() -> None:
    for target in STATUSES:
        expected = {src for src, dst in CONTRACT if dst == target}
        assert trip_states.sources_of(target) == frozenset(expected)


def test_happy_path_walks_through_to_completed() -> None:
    path = ["requested", "assigned", "arrived", "in_progress", "completed"]
    for current, target in itertools.pairwise(path):
        check(current, target)
    # And no skipping ahead.
    for i, current in enumerate(path):
        for later in path[i + 2 :]:
            with pytest.raises(IllegalTransition):
                check(current, later)
