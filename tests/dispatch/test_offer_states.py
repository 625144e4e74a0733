"""dispatch.offer_states: the offer state machine, every pair of statuses."""

from __future__ import annotations

import itertools

import pytest

from core.errors import OfferExpired, OfferWithdrawn
from core.models.offer import OFFER_STATUSES
from dispatch import offer_states
from dispatch.offer_states import check

# Written out from docs/trips-and-offers.md, independently of offer_states.TRANSITIONS.
CONTRACT = {
    ("pending", "accepted"),
    ("pending", "declined"),
    ("pending", "expired"),
    ("pending", "withdrawn"),
}
ALL_PAIRS = list(itertools.product(OFFER_STATUSES, OFFER_STATUSES))
REFUSED = [pair for pair in ALL_PAIRS if pair not in CONTRACT]


def test_the_table_knows_exactly_the_stored_statuses() -> None:
    assert set(offer_states.TRANSITIONS) == set(OFFER_STATUSES)
    assert {"pending"} == offer_states.OPEN
    assert set(OFFER_STATUSES) - {"pending"} == offer_states.FINAL


@pytest.mark.parametrize(("current", "target"), sorted(CONTRACT))
def test_a_pending_offer_may_end_any_way(current: str, target: str) -> None:
    check("ofr_1", current, target)  # must not raise
    assert offer_states.can_move(current, target)


@pytest.mark.parametrize(("current", "target"), REFUSED)
def test_any_other_move_is_refused_as_the_phone_is_told(current: str, target: str) -> None:
    assert not offer_states.can_move(current, target)
    expected = OfferExpired if current == "expired" else OfferWithdrawn
    with pytest.raises(expected) as info:
        check("ofr_1", current, target)
    assert "ofr_1" in info.value.detail
    assert info.value.slug == ("offer-expired" if current == "expired" else "offer-withdrawn")


def test_every_pair_was_classified() -> None:
    assert len(ALL_PAIRS) == 25 and len(REFUSED) == 21


def test_sources_of_matches_the_contract() -> None:
    for target in OFFER_STATUSES:
        assert offer_states.sources_of(target) == {s for s, t in CONTRACT if t == target}


def test_unknown_statuses_are_refused() -> None:
    assert not offer_states.can_move("bogus", "accepted")
    assert not offer_states.can_move("pending", "bogus")
    with pytest.raises(OfferWithdrawn):
        check("ofr_1", "pending", "bogus")
