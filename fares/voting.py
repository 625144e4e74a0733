"""The rules of a fare vote, as pure functions over frozen dataclasses: a draft completed
into the rule it proposes, the voting window, the tally (one member, one ballot) and
the decision (quorum, then majority). No I/O: ``fares.governance`` does the storing,
locking and telling around them. ``docs/governance.md`` explains the rules.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from core.clock import iso
from core.errors import ClosesTooSoon, InvalidInput
from core.fare_terms import COST_RECOVERY_MODES, TERM_FIELDS, FareTerms, Kind

Choice = Literal["yes", "no", "abstain"]
CHOICES: tuple[Choice, ...] = ("yes", "no", "abstain")

# The furthest ahead a vote may close: any bylaw window fits, but a mistyped year does
# not park a proposal (and its voter snapshot) for a decade.
MAX_WINDOW_S = 90 * 24 * 3600

# A proposed rule as a member sends it: ``FareTerms`` field names (per-mille as integers)
# to values. A field that keeps the current value (``Term.keeps_current``) may be left
# out; every other field must be there.
RuleDraft = Mapping[str, Any]


def complete_rule(draft: RuleDraft, current: FareTerms) -> FareTerms:
    """The full rule a draft proposes, checked against the current one."""
    known = {f.name for f in TERM_FIELDS}
    unknown = sorted(set(draft) - known)
    if unknown:
        raise InvalidInput(f"a fare rule has no field {', '.join(unknown)}")
    missing = [f.wire_name for f in TERM_FIELDS if f.name not in draft and not f.term.keeps_current]
    if missing:
        raise InvalidInput(f"a proposal must set {', '.join(missing)}")
    terms = replace(current.terms(), **draft)
    for f in TERM_FIELDS:
        value = getattr(terms, f.name)
        if f.term.kind is Kind.CURRENCY and value != current.currency:
            # Trips, earnings and budgets are summed in one currency; changing it is a
            # migration of the co-op's books, not a fare vote.
            raise InvalidInput(f"a vote cannot change the currency ({current.currency} to {value})")
        if f.term.kind is Kind.PERMILLE and not 0 <= value <= 1000:
            raise InvalidInput(f"{f.wire_name} must be within 0..1")
        if f.term.kind is Kind.CENTS and value < 0:
            raise InvalidInput("fare amounts must not be negative")
        if f.term.kind is Kind.MODE and value not in COST_RECOVERY_MODES:
            raise InvalidInput(f"{f.name} must be one of {', '.join(COST_RECOVERY_MODES)}")
    return terms


def check_window(*, opens_at: datetime, closes_at: datetime, min_window_s: int) -> None:
    if closes_at.tzinfo is None:
        raise InvalidInput("closes_at needs a UTC offset")
    earliest = opens_at + timedelta(seconds=min_window_s)
    if closes_at < earliest or closes_at <= opens_at:
        raise ClosesTooSoon(
            f"closes_at must be at least {min_window_s} s after opening, "
            f"i.e. not before {iso(earliest)}"
        )
    latest = opens_at + timedelta(seconds=max(MAX_WINDOW_S, min_window_s))
    if closes_at > latest:
        raise InvalidInput(f"closes_at must not be after {iso(latest)}")


@dataclass(frozen=True, slots=True)
class BallotCast:
    member_id: str
    choice: Choice


@dataclass(frozen=True, slots=True)
class Tally:
    yes: int = 0
    no: int = 0
    abstain: int = 0

    @property
    def cast(self) -> int:
        """Ballots cast; abstentions count towards the quorum, not the majority."""
        return self.yes + self.no + self.abstain

    def payload(self) -> dict[str, int]:
        return {"yes": self.yes, "no": self.no, "abstain": self.abstain}


def tally(ballots: Iterable[BallotCast], *, eligible: Collection[str] | None = None) -> Tally:
    """Count ballots given in the order they were cast: each member's last ballot is the
    one that counts, and ballots from members outside ``eligible`` count for nothing."""
    final: dict[str, Choice] = {}
    for ballot in ballots:
        if eligible is not None and ballot.member_id not in eligible:
            continue
        final[ballot.member_id] = ballot.choice
    counts = Counter(final.values())
    return Tally(yes=counts["yes"], no=counts["no"], abstain=counts["abstain"])


def quorum_permille(fraction: float) -> int:
    """``COOP_VOTE_QUORUM`` (a fraction of the members) in per-mille, the precision the
    bylaws are kept in, so that deciding is integer arithmetic."""
    if not 0 <= fraction <= 1:
        raise ValueError("the quorum is a fraction within 0..1")
    return round(fraction * 1000)


def quorum_ballots(*, eligible_voters: int, quorum_permille: int) -> int:
    """The fewest ballots that meet the quorum: ⌈quorum × eligible voters⌉."""
    return -(-eligible_voters * quorum_permille // 1000)


@dataclass(frozen=True, slots=True)
class Outcome:
    status: Literal["adopted", "rejected"]
    reason: str


def decide(t: Tally, *, eligible_voters: int, quorum_ballots: int) -> Outcome:
    """Adopted when the quorum is met and yes outnumbers no; otherwise rejected, with
    the reason stated. A tie changes nothing."""
    counts = (
        f"{t.yes} yes, {t.no} no, {t.abstain} abstain; "
        f"{t.cast} of {eligible_voters} eligible members voted"
    )
    if t.cast < quorum_ballots:
        return Outcome(
            "rejected", f"quorum not met: {quorum_ballots} ballots were needed ({counts})"
        )
    if t.yes > t.no:
        return Outcome("adopted", f"adopted by majority ({counts})")
    if t.yes == t.no:
        return Outcome("rejected", f"tie: an equal vote does not change the rule ({counts})")
    return Outcome("rejected", f"majority against ({counts})")
