"""The co-op's double-entry arithmetic, pure (no I/O; property-tested in
``tests/fares/test_ledger.py``): the accounts, balanced journals, the per-trip fee,
equal dues, patronage by largest remainder, and the journals a trip, a cancellation and
a period close post. ``fares.ledger`` writes them to PostgreSQL.

Sign convention: a posting's ``amount_cents`` is a debit when positive and a credit when
negative, so a journal balances when its postings sum to zero; the database refuses to
commit one that does not (migration 0004). Accounts:

- ``rider:<id>``            what the rider paid (debited with the fare)
- ``member:<id>``           what the co-op owes the member (credited with earnings and
                            patronage, debited with dues)
- ``coop:cost_recovery``    the cost-recovery fund (credited with fees and dues, debited
                            with costs paid and patronage)
- ``coop:suppliers``        the outside world the budget's costs are paid to
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from core.fare_terms import CostRecoveryMode

FUND = "coop:cost_recovery"
SUPPLIERS = "coop:suppliers"


def rider_account(rider_id: str) -> str:
    return f"rider:{rider_id}"


def member_account(member_id: str) -> str:
    return f"member:{member_id}"


@dataclass(frozen=True, slots=True)
class Posting:
    account: str
    amount_cents: int  # > 0 debit, < 0 credit


@dataclass(frozen=True, slots=True)
class JournalDraft:
    kind: str  # trip | cancellation | dues | cost | patronage
    postings: tuple[Posting, ...]
    member_id: str | None = None
    trip_id: str | None = None
    memo: str = ""


def journal(
    kind: str,
    entries: Iterable[tuple[str, int]],
    *,
    member_id: str | None = None,
    trip_id: str | None = None,
    memo: str = "",
) -> JournalDraft:
    """A balanced journal from ``(account, amount)`` pairs; zero amounts are left out.
    An unbalanced one is a programming error, refused here before the database would."""
    postings = tuple(Posting(a, c) for a, c in entries if c != 0)
    if sum(p.amount_cents for p in postings) != 0:
        raise ValueError(f"unbalanced {kind} journal: {postings}")
    return JournalDraft(kind, postings, member_id=member_id, trip_id=trip_id, memo=memo)


def per_trip_fee_cents(budget_cents: int, expected_trips: int) -> int:
    """The budget over the expected trips, rounded up to the cent (a credit balance
    leaves nothing to recover)."""
    if expected_trips < 1:
        raise ValueError("expected_trips must be at least 1")
    return -(-max(budget_cents, 0) // expected_trips)


def allocate(total_cents: int, weights: Mapping[str, int]) -> dict[str, int]:
    """Split ``total_cents`` in proportion to ``weights`` by largest remainder: every
    share is the floor of its exact quota, and the cents left over go one each to the
    largest remainders (ties by key). The shares always sum to ``total_cents``."""
    if total_cents < 0 or any(w < 0 for w in weights.values()):
        raise ValueError("the total and the weights must not be negative")
    weight = sum(weights.values())
    if weight == 0:
        if total_cents:
            raise ValueError("cannot allocate over zero weight")
        return {k: 0 for k in weights}
    shares = {k: total_cents * w // weight for k, w in weights.items()}
    left = total_cents - sum(shares.values())
    by_remainder = sorted(weights, key=lambda k: (-(total_cents * weights[k] % weight), k))
    for k in by_remainder[:left]:
        shares[k] += 1
    return shares


def split_equally(total_cents: int, member_ids: Sequence[str]) -> dict[str, int]:
    """Dues: an equal share per member, the odd cents to the first members by id."""
    return allocate(max(total_cents, 0), {m: 1 for m in member_ids}) if member_ids else {}


def trip_journal(
    *, trip_id: str, rider_id: str, driver_id: str, total_cents: int, cost_recovery_cents: int
) -> JournalDraft:
    """The rider pays the fare; the member earns all of it but the cost-recovery fee,
    which goes to the fund. No commission: there is no account for one."""
    if not 0 <= cost_recovery_cents <= total_cents:
        raise ValueError("the fee must be part of the fare")
    return journal(
        "trip",
        [
            (rider_account(rider_id), total_cents),
            (member_account(driver_id), -(total_cents - cost_recovery_cents)),
            (FUND, -cost_recovery_cents),
        ],
        member_id=driver_id,
        trip_id=trip_id,
    )


def cancellation_journal(
    *, trip_id: str, rider_id: str, driver_id: str, fee_cents: int
) -> JournalDraft:
    """A rider's late cancellation: the whole fee goes to the member who was on the way."""
    if fee_cents <= 0:
        raise ValueError("a cancellation journal needs a positive fee")
    return journal(
        "cancellation",
        [(rider_account(rider_id), fee_cents), (member_account(driver_id), -fee_cents)],
        member_id=driver_id,
        trip_id=trip_id,
        memo="cancellation fee",
    )


@dataclass(frozen=True, slots=True)
class BudgetLineTerms:
    label: str
    amount_cents: int
    carried_from: str | None = None


@dataclass(frozen=True, slots=True)
class ClosePlan:
    costs_cents: int  # every line of the budget, carried ones included
    paid_out_cents: int  # the lines paid to suppliers (not carried ones)
    cost_recovery_cents: int
    dues: dict[str, int]
    surplus_cents: int  # cost recovery + dues - costs; negative for a deficit
    patronage: dict[str, int]
    carry_cents: int  # the line the next period inherits (deficit > 0, credit < 0)
    journals: list[JournalDraft] = field(default_factory=list)

    @property
    def dues_cents(self) -> int:
        return sum(self.dues.values())


def plan_close(
    *,
    mode: CostRecoveryMode,
    lines: Sequence[BudgetLineTerms],
    cost_recovery_cents: int,
    trips_by_member: Mapping[str, int],
    active_members: Sequence[str],
) -> ClosePlan:
    """What closing a period posts. The budget's own lines are paid to suppliers from
    the fund; under ``dues`` each active member is charged an equal share of the budget;
    a surplus goes back to the members in proportion to their trips (patronage), and
    what cannot be shared (a deficit, or a surplus with no trips) carries as a line into
    the next period's budget."""
    costs = sum(line.amount_cents for line in lines)
    paid_out = sum(line.amount_cents for line in lines if line.carried_from is None)
    dues = split_equally(costs, sorted(active_members)) if mode == "dues" else {}
    surplus = cost_recovery_cents + sum(dues.values()) - costs
    weights = {m: n for m, n in trips_by_member.items() if n > 0}
    patronage = allocate(surplus, weights) if surplus > 0 and weights else {}
    carry = 0 if patronage else -surplus
    journals = [
        journal("dues", [(member_account(m), c), (FUND, -c)], member_id=m, memo="dues")
        for m, c in sorted(dues.items())
        if c
    ]
    if paid_out:
        journals.append(journal("cost", [(FUND, paid_out), (SUPPLIERS, -paid_out)], memo="costs"))
    journals += [
        journal("patronage", [(FUND, c), (member_account(m), -c)], member_id=m, memo="patronage")
        for m, c in sorted(patronage.items())
        if c
    ]
    return ClosePlan(
        costs, paid_out, cost_recovery_cents, dues, surplus, patronage, carry, journals
    )
