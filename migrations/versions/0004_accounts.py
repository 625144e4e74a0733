"""co-op accounts

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22

Budgets and their lines, the double-entry ledger (journals of postings), closed periods
and their patronage shares. The database itself keeps the books honest: every journal's
postings sum to zero (deferred constraint trigger, checked at commit), posted journals
and closed periods never change, and no journal is posted into a closed period.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

PERIOD_CHECK = "period ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'"


def upgrade() -> None:
    op.create_table(
        "budgets",
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("expected_trips", sa.Integer(), nullable=False),
        sa.Column(
            "published_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
        sa.CheckConstraint(PERIOD_CHECK, name=op.f("ck_budgets_period")),
        sa.CheckConstraint("expected_trips >= 1", name=op.f("ck_budgets_expected_trips")),
        sa.PrimaryKeyConstraint("period", name=op.f("pk_budgets")),
    )
    op.create_table(
        "budget_lines",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("carried_from", sa.String(length=7), nullable=True),
        sa.CheckConstraint(
            "carried_from IS NOT NULL OR amount_cents >= 0", name=op.f("ck_budget_lines_amount")
        ),
        sa.ForeignKeyConstraint(
            ["period"], ["budgets.period"], name=op.f("fk_budget_lines_period_budgets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_budget_lines")),
    )
    op.create_index(op.f("ix_budget_lines_period"), "budget_lines", ["period"])
    op.create_table(
        "ledger_journals",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("trip_id", sa.String(length=40), nullable=True),
        sa.Column("member_id", sa.String(length=40), nullable=True),
        sa.Column("memo", sa.String(length=200), nullable=False),
        sa.Column(
            "posted_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
        sa.CheckConstraint(PERIOD_CHECK, name=op.f("ck_ledger_journals_period")),
        sa.CheckConstraint(
            "kind IN ('trip', 'dues', 'cost', 'patronage')", name=op.f("ck_ledger_journals_kind")
        ),
        sa.ForeignKeyConstraint(
            ["trip_id"], ["trips.id"], name=op.f("fk_ledger_journals_trip_id_trips")
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_ledger_journals_member_id_members")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_journals")),
        sa.UniqueConstraint("trip_id", name=op.f("uq_ledger_journals_trip_id")),
    )
    op.create_index(op.f("ix_ledger_journals_period"), "ledger_journals", ["period"])
    op.create_table(
        "ledger_postings",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("journal_id", sa.BigInteger(), nullable=False),
        sa.Column("account", sa.String(length=80), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("amount_cents <> 0", name=op.f("ck_ledger_postings_non_zero")),
        sa.ForeignKeyConstraint(
            ["journal_id"],
            ["ledger_journals.id"],
            name=op.f("fk_ledger_postings_journal_id_ledger_journals"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_postings")),
    )
    op.create_index(op.f("ix_ledger_postings_journal_id"), "ledger_postings", ["journal_id"])
    op.create_index(op.f("ix_ledger_postings_account"), "ledger_postings", ["account"])
    op.create_table(
        "closed_periods",
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("cost_recovery_mode", sa.String(length=16), nullable=False),
        sa.Column("costs_cents", sa.BigInteger(), nullable=False),
        sa.Column("surplus_cents", sa.BigInteger(), nullable=False),
        sa.Column("carried_to", sa.String(length=7), nullable=True),
        sa.Column(
            "closed_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
        sa.CheckConstraint(PERIOD_CHECK, name=op.f("ck_closed_periods_period")),
        sa.PrimaryKeyConstraint("period", name=op.f("pk_closed_periods")),
    )
    op.create_table(
        "patronage_shares",
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("member_id", sa.String(length=40), nullable=False),
        sa.Column("trips", sa.Integer(), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["period"],
            ["closed_periods.period"],
            name=op.f("fk_patronage_shares_period_closed_periods"),
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_patronage_shares_member_id_members")
        ),
        sa.PrimaryKeyConstraint("period", "member_id", name=op.f("pk_patronage_shares")),
    )

    # Trips completed before the ledger existed are posted into the month they completed
    # in, so that earnings (now read from the ledger) keep counting them.
    op.execute(
        """
        WITH posted AS (
            INSERT INTO ledger_journals (period, kind, trip_id, member_id, memo, posted_at)
            SELECT to_char(completed_at AT TIME ZONE 'UTC', 'YYYY-MM'), 'trip', id,
                   driver_id, 'posted by migration 0004', completed_at
            FROM trips
            WHERE status = 'completed' AND driver_id IS NOT NULL AND completed_at IS NOT NULL
            RETURNING id, trip_id
        )
        INSERT INTO ledger_postings (journal_id, account, amount_cents)
        SELECT posted.id, line.account, line.amount_cents
        FROM posted
        JOIN trips t ON t.id = posted.trip_id
        CROSS JOIN LATERAL (VALUES
            ('rider:' || t.rider_id, t.fare_total_cents),
            ('member:' || t.driver_id, -(t.fare_total_cents - t.cost_recovery_cents)),
            ('coop:cost_recovery', -t.cost_recovery_cents)
        ) AS line (account, amount_cents)
        WHERE line.amount_cents <> 0
        """
    )

    # Debits = credits, checked by the database at commit for every journal touched.
    op.execute(
        """
        CREATE FUNCTION coop_journal_balances() RETURNS trigger
        LANGUAGE plpgsql AS $$
        DECLARE
            total numeric;
        BEGIN
            SELECT COALESCE(SUM(amount_cents), 0) INTO total
                FROM ledger_postings WHERE journal_id = NEW.journal_id;
            IF total <> 0 THEN
                RAISE EXCEPTION 'journal % does not balance: postings sum to %',
                    NEW.journal_id, total USING ERRCODE = 'check_violation';
            END IF;
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        "CREATE CONSTRAINT TRIGGER ledger_postings_balanced AFTER INSERT ON ledger_postings "
        "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION coop_journal_balances()"
    )
    # Nothing is posted into a closed period.
    op.execute(
        """
        CREATE FUNCTION coop_period_open() RETURNS trigger
        LANGUAGE plpgsql AS $$
        DECLARE
            touched text[];
        BEGIN
            IF TG_OP = 'INSERT' THEN
                touched := ARRAY[NEW.period];
            ELSIF TG_OP = 'UPDATE' THEN
                touched := ARRAY[NEW.period, OLD.period];
            ELSE
                touched := ARRAY[OLD.period];
            END IF;
            IF EXISTS (SELECT 1 FROM closed_periods WHERE period = ANY(touched)) THEN
                RAISE EXCEPTION 'period closed: % on % refused', TG_OP, TG_TABLE_NAME
                    USING ERRCODE = 'check_violation';
            END IF;
            IF TG_OP = 'DELETE' THEN
                RETURN OLD;
            END IF;
            RETURN NEW;
        END
        $$
        """
    )
    for table in ("ledger_journals", "budgets", "budget_lines"):
        op.execute(
            f"CREATE TRIGGER {table}_period_open BEFORE INSERT OR UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION coop_period_open()"
        )
    # The books are append-only; a closed period and its shares never change.
    for table in ("ledger_journals", "ledger_postings", "closed_periods", "patronage_shares"):
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION coop_refuse_change()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION coop_refuse_change()"
        )


def downgrade() -> None:
    op.drop_table("patronage_shares")
    op.drop_table("closed_periods")
    op.drop_table("ledger_postings")
    op.drop_table("ledger_journals")
    op.drop_table("budget_lines")
    op.drop_table("budgets")
    op.execute("DROP FUNCTION coop_period_open()")
    op.execute("DROP FUNCTION coop_journal_balances()")
