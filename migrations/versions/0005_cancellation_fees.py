"""cancellation fees

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22

A rider who cancels after a driver is on the way pays the trip's fare rule's
cancellation fee to that driver: the trip records what was charged, and the ledger
gets a ``cancellation`` journal (rider debited, member credited).
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

OLD_KINDS = "kind IN ('trip', 'dues', 'cost', 'patronage')"
NEW_KINDS = "kind IN ('trip', 'dues', 'cost', 'patronage', 'cancellation')"


def upgrade() -> None:
    op.add_column(
        "trips",
        sa.Column("cancellation_fee_cents", sa.Integer(), server_default="0", nullable=False),
    )
    op.create_check_constraint(
        op.f("ck_trips_cancellation_fee_cents"), "trips", "cancellation_fee_cents >= 0"
    )
    op.drop_constraint(op.f("ck_ledger_journals_kind"), "ledger_journals", type_="check")
    op.create_check_constraint(op.f("ck_ledger_journals_kind"), "ledger_journals", NEW_KINDS)


def downgrade() -> None:
    op.drop_constraint(op.f("ck_ledger_journals_kind"), "ledger_journals", type_="check")
    op.create_check_constraint(op.f("ck_ledger_journals_kind"), "ledger_journals", OLD_KINDS)
    op.drop_constraint(op.f("ck_trips_cancellation_fee_cents"), "trips", type_="check")
    op.drop_column("trips", "cancellation_fee_cents")
