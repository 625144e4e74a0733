"""core.fare_terms: the fare rule's fields, named once; the columns of both tables, the
wire schemas and the audit payload are all generated from them."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from core.fare_terms import (
    OPENING_TERMS,
    TERM_FIELDS,
    FareRuleTerms,
    FareTerms,
    Kind,
    from_wire_view,
    wire_view,
)
from core.models import FareRule, Proposal
from core.models.fare_rule import terms_of
from web.schemas import FareRuleFieldsIn, FareRuleFieldsOut, FareRuleOut

NAMES = [f.name for f in dataclasses.fields(FareTerms)]
WIRE_NAMES = [f.wire_name for f in TERM_FIELDS]

terms = st.builds(
    FareTerms,
    base_cents=st.integers(0, 1_000_000),
    per_km_cents=st.integers(0, 1_000_000),
    per_minute_cents=st.integers(0, 1_000_000),
    minimum_cents=st.integers(0, 1_000_000),
    cancellation_fee_cents=st.integers(0, 1_000_000),
    currency=st.sampled_from(["USD", "EUR"]),
    cost_recovery_mode=st.sampled_from(["per_trip", "dues"]),
    fairness_weight_permille=st.integers(0, 1000),
)


def test_every_field_has_a_term() -> None:
    assert [f.name for f in TERM_FIELDS] == NAMES
    assert {f.term.kind for f in TERM_FIELDS} == set(Kind)
    assert WIRE_NAMES[-1] == "fairness_weight"


def test_both_tables_have_a_column_per_field() -> None:
    for table in (FareRule.__table__, Proposal.__table__):
        for name in NAMES:
            assert not table.c[name].nullable, (table.name, name)


def test_every_wire_schema_has_every_field() -> None:
    for model in (FareRuleFieldsIn, FareRuleFieldsOut, FareRuleOut):
        assert set(WIRE_NAMES) <= set(model.model_fields), model.__name__
    assert FareRuleFieldsIn.__name__ == "FareRuleFieldsIn"


@given(terms)
def test_wire_and_rows_round_trip(t: FareTerms) -> None:
    view = wire_view(t)
    assert FareTerms(**from_wire_view(view)) == t
    assert FareRuleFieldsOut.of(t).model_dump() == view
    assert FareTerms(**from_wire_view(FareRuleFieldsOut.of(t).model_dump())) == t
    sent = FareRuleFieldsIn.model_validate(view)
    assert sent.draft() == t.payload()
    row = FareRule(version=1, **t.payload())
    assert terms_of(row) == t
    rule = FareRuleTerms(**t.payload(), version=7)
    assert rule.terms() == t
    assert FareRuleOut.of(rule).model_dump()["version"] == 7


def test_a_proposal_may_leave_out_what_keeps_the_current_value() -> None:
    view = wire_view(OPENING_TERMS)
    del view["fairness_weight"]
    assert "fairness_weight_permille" not in FareRuleFieldsIn.model_validate(view).draft()
    del view["base_cents"]
    with pytest.raises(ValidationError):
        FareRuleFieldsIn.model_validate(view)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("base_cents", -1),
        ("base_cents", 1_000_001),
        ("base_cents", "250"),
        ("base_cents", True),
        ("currency", "usd"),
        ("cost_recovery_mode", "monthly"),
        ("fairness_weight", 0.1234),
        ("fairness_weight", 1.5),
        ("fairness_weight", "0.5"),
    ],
)
def test_what_a_member_sends_is_checked(field: str, value: object) -> None:
    with pytest.raises(ValidationError):
        FareRuleFieldsIn.model_validate({**wire_view(OPENING_TERMS), field: value})
    with pytest.raises(ValidationError):
        FareRuleFieldsIn.model_validate({**wire_view(OPENING_TERMS), "surge": 2})
