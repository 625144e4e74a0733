"""fares.voting, the pure core of governance: tallies, quorum, the decision, drafts."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import ClosesTooSoon, InvalidInput
from core.fare_terms import OPENING_TERMS, FareRuleTerms
from fares.voting import (
    CHOICES,
    BallotCast,
    RuleDraft,
    Tally,
    check_window,
    complete_rule,
    decide,
    quorum_ballots,
    quorum_permille,
    tally,
)

PROPERTY_SETTINGS = settings(max_examples=300, deadline=None)

MEMBERS = st.sampled_from([f"drv_{i}" for i in range(12)])
CHOICE = st.sampled_from(CHOICES)
BALLOTS = st.lists(st.builds(BallotCast, member_id=MEMBERS, choice=CHOICE), max_size=60)


def final_choices(ballots: list[BallotCast]) -> dict[str, str]:
    final: dict[str, str] = {}
    for b in ballots:
        final[b.member_id] = b.choice
    return final


@PROPERTY_SETTINGS
@given(BALLOTS)
def test_a_tally_counts_each_member_once_with_their_last_ballot(
    ballots: list[BallotCast],
) -> None:
    t = tally(ballots)
    final = final_choices(ballots)
    assert t.cast == len(final) == len({b.member_id for b in ballots})
    assert t.yes == sum(c == "yes" for c in final.values())
    assert t.no == sum(c == "no" for c in final.values())
    assert t.abstain == sum(c == "abstain" for c in final.values())


@PROPERTY_SETTINGS
@given(BALLOTS, MEMBERS, CHOICE)
def test_a_recast_replaces_the_earlier_ballot(
    ballots: list[BallotCast], member: str, choice: str
) -> None:
    before = tally(ballots)
    after = tally([*ballots, BallotCast(member, choice)])  # type: ignore[arg-type]
    previous = final_choices(ballots).get(member)
    assert after.cast == before.cast + (previous is None)
    expected = before.payload()
    if previous is not None:
        expected[previous] -= 1
    expected[choice] += 1
    assert after.payload() == expected


@PROPERTY_SETTINGS
@given(BALLOTS, st.randoms(use_true_random=False))
def test_only_each_members_own_order_matters(ballots: list[BallotCast], rnd: random.Random) -> None:
    """Interleave the members' ballots differently: the tally does not change, as long
    as each member's ballots keep their order."""
    per_member: dict[str, list[BallotCast]] = {}
    for b in ballots:
        per_member.setdefault(b.member_id, []).append(b)
    queues = [list(q) for q in per_member.values()]
    shuffled = []
    while queues:
        q = rnd.choice(queues)
        shuffled.append(q.pop(0))
        if not q:
            queues.remove(q)
    assert tally(shuffled) == tally(ballots)


@PROPERTY_SETTINGS
@given(BALLOTS, st.frozensets(MEMBERS))
def test_ballots_from_outside_the_snapshot_count_for_nothing(
    ballots: list[BallotCast], eligible: frozenset[str]
) -> None:
    assert tally(ballots, eligible=eligible) == tally(
        [b for b in ballots if b.member_id in eligible]
    )
    assert tally(ballots, eligible=eligible).cast <= len(eligible)


@PROPERTY_SETTINGS
@given(st.integers(0, 100_000), st.integers(0, 1000))
def test_quorum_ballots_is_the_ceiling_of_quorum_times_voters(eligible: int, q: int) -> None:
    needed = quorum_ballots(eligible_voters=eligible, quorum_permille=q)
    assert needed * 1000 >= q * eligible
    assert needed == 0 or (needed - 1) * 1000 < q * eligible
    assert 0 <= needed <= eligible


@PROPERTY_SETTINGS
@given(st.integers(0, 50), st.integers(0, 50), st.integers(0, 50), st.integers(0, 1000))
def test_adopted_exactly_when_quorum_and_majority_hold(
    yes: int, no: int, abstain: int, q: int
) -> None:
    t = Tally(yes=yes, no=no, abstain=abstain)
    eligible = t.cast + 10
    needed = quorum_ballots(eligible_voters=eligible, quorum_permille=q)
    outcome = decide(t, eligible_voters=eligible, quorum_ballots=needed)
    quorate = t.cast * 1000 >= q * eligible
    assert (outcome.status == "adopted") == (quorate and yes > no)
    assert outcome.reason
    if yes == no:
        assert outcome.status == "rejected"
    if not quorate:
        assert outcome.reason.startswith("quorum not met")


def test_decisions_state_their_reason() -> None:
    assert decide(Tally(2, 2, 0), eligible_voters=4, quorum_ballots=1).reason.startswith("tie")
    assert decide(Tally(1, 2, 0), eligible_voters=4, quorum_ballots=1).reason.startswith(
        "majority against"
    )
    adopted = decide(Tally(3, 1, 1), eligible_voters=10, quorum_ballots=5)
    assert adopted.status == "adopted"
    assert "3 yes, 1 no, 1 abstain" in adopted.reason
    short = decide(Tally(3, 0, 0), eligible_voters=10, quorum_ballots=5)
    assert short.status == "rejected" and "5 ballots were needed" in short.reason
    # Abstentions count towards the quorum but not the majority.
    assert decide(Tally(1, 0, 4), eligible_voters=10, quorum_ballots=5).status == "adopted"
    assert decide(Tally(0, 0, 5), eligible_voters=10, quorum_ballots=5).status == "rejected"


def test_quorum_permille() -> None:
    assert quorum_permille(0.25) == 250
    assert quorum_permille(0) == 0 and quorum_permille(1) == 1000
    with pytest.raises(ValueError):
        quorum_permille(1.5)


def test_window_bounds() -> None:
    opens = datetime(2026, 11, 22, 12, tzinfo=UTC)
    check_window(opens_at=opens, closes_at=opens + timedelta(days=1), min_window_s=86400)
    with pytest.raises(ClosesTooSoon):
        check_window(opens_at=opens, closes_at=opens + timedelta(seconds=86399), min_window_s=86400)
    with pytest.raises(ClosesTooSoon):
        check_window(opens_at=opens, closes_at=opens, min_window_s=0)
    with pytest.raises(InvalidInput):
        check_window(opens_at=opens, closes_at=opens + timedelta(days=400), min_window_s=60)


def test_a_draft_keeps_the_current_bylaws_unless_it_changes_them() -> None:
    current = FareRuleTerms(
        **{**OPENING_TERMS.payload(), "fairness_weight_permille": 400}, version=3
    )
    draft: RuleDraft = {
        "base_cents": 300,
        "per_km_cents": 130,
        "per_minute_cents": 40,
        "minimum_cents": 900,
        "cancellation_fee_cents": 500,
        "currency": "USD",
        "cost_recovery_mode": "dues",
    }
    assert complete_rule(draft, current).fairness_weight_permille == 400
    assert complete_rule(draft, current).cost_recovery_mode == "dues"
    changed = {**draft, "fairness_weight_permille": 0}
    assert complete_rule(changed, current).fairness_weight_permille == 0
    with pytest.raises(InvalidInput, match="currency"):
        complete_rule({**draft, "currency": "EUR"}, current)
    # A price cannot be left out, nor a field made up, nor an amount negative.
    with pytest.raises(InvalidInput, match="per_km_cents"):
        complete_rule({k: v for k, v in draft.items() if k != "per_km_cents"}, current)
    with pytest.raises(InvalidInput, match="surge"):
        complete_rule({**draft, "surge_permille": 2000}, current)
    with pytest.raises(InvalidInput, match="negative"):
        complete_rule({**draft, "minimum_cents": -1}, current)
    with pytest.raises(InvalidInput, match="fairness_weight"):
        complete_rule({**draft, "fairness_weight_permille": 1001}, current)
