"""governance and the audit log

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

Fare rules gain the dispatcher's fairness weight (per mille) as a bylaw field, and are
made immutable (a trigger refuses UPDATE and DELETE). Proposals, the snapshot of members
eligible to vote on each, and ballots (one per member and proposal). The hash-chained
audit log, append-only by trigger (and UPDATE/DELETE/TRUNCATE revoked from PUBLIC), seeded
with one ``rule.adopted`` entry per rule version already in place, so the chain records
every rule the co-op has priced trips with, starting with version 1.
"""

import hashlib
import json
from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

GENESIS_HASH = "0" * 64


def _at(moment: datetime) -> str:
    # The same rendering as fares.audit.format_at: fixed width, microseconds, "Z".
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _jcs(value: object) -> str:
    # RFC 8785 for what the seed holds (ASCII keys, integers, ASCII strings, null):
    # sorted keys, no whitespace. fares.audit.canonical_json is the general version.
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def upgrade() -> None:
    # -- fare rules: the fairness bylaw, one proposal per version, immutability --------
    op.add_column('fare_rules', sa.Column('fairness_weight_permille', sa.Integer(), server_default='0', nullable=False))
    op.create_check_constraint(op.f('ck_fare_rules_fairness_weight'), 'fare_rules', 'fairness_weight_permille BETWEEN 0 AND 1000')

    op.create_table('proposals',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('proposer_id', sa.String(length=40), nullable=False),
    sa.Column('rationale', sa.Text(), nullable=False),
    sa.Column('base_cents', sa.Integer(), nullable=False),
    sa.Column('per_km_cents', sa.Integer(), nullable=False),
    sa.Column('per_minute_cents', sa.Integer(), nullable=False),
    sa.Column('minimum_cents', sa.Integer(), nullable=False),
    sa.Column('cancellation_fee_cents', sa.Integer(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('cost_recovery_mode', sa.String(length=16), nullable=False),
    sa.Column('fairness_weight_permille', sa.Integer(), nullable=False),
    sa.Column('opens_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('closes_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('eligible_voters', sa.Integer(), nullable=False),
    sa.Column('quorum_permille', sa.Integer(), nullable=False),
    sa.Column('quorum_ballots', sa.Integer(), nullable=False),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('result_reason', sa.Text(), nullable=True),
    sa.Column('yes_count', sa.Integer(), nullable=True),
    sa.Column('no_count', sa.Integer(), nullable=True),
    sa.Column('abstain_count', sa.Integer(), nullable=True),
    sa.CheckConstraint("status IN ('open', 'adopted', 'rejected')", name=op.f('ck_proposals_status')),
    sa.CheckConstraint('base_cents >= 0 AND per_km_cents >= 0 AND per_minute_cents >= 0 AND minimum_cents >= 0 AND cancellation_fee_cents >= 0', name=op.f('ck_proposals_non_negative')),
    sa.CheckConstraint("cost_recovery_mode IN ('per_trip', 'dues')", name=op.f('ck_proposals_mode')),
    sa.CheckConstraint('fairness_weight_permille BETWEEN 0 AND 1000', name=op.f('ck_proposals_fairness_weight')),
    sa.CheckConstraint('closes_at > opens_at', name=op.f('ck_proposals_window')),
    sa.CheckConstraint('eligible_voters >= 0 AND quorum_permille BETWEEN 0 AND 1000 AND quorum_ballots BETWEEN 0 AND eligible_voters', name=op.f('ck_proposals_quorum')),
    sa.CheckConstraint("(status = 'open') = (closed_at IS NULL AND result_reason IS NULL)", name=op.f('ck_proposals_closed_has_result')),
    sa.ForeignKeyConstraint(['proposer_id'], ['members.id'], name=op.f('fk_proposals_proposer_id_members')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_proposals'))
    )
    op.create_index('ix_proposals_open_closes_at', 'proposals', ['closes_at'], unique=False, postgresql_where=sa.text("status = 'open'"))
    op.create_index('ix_proposals_status_id', 'proposals', ['status', 'id'], unique=False)

    op.create_table('proposal_voters',
    sa.Column('proposal_id', sa.String(length=40), nullable=False),
    sa.Column('member_id', sa.String(length=40), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_proposal_voters_member_id_members')),
    sa.ForeignKeyConstraint(['proposal_id'], ['proposals.id'], name=op.f('fk_proposal_voters_proposal_id_proposals')),
    sa.PrimaryKeyConstraint('proposal_id', 'member_id', name=op.f('pk_proposal_voters'))
    )

    op.create_table('ballots',
    sa.Column('proposal_id', sa.String(length=40), nullable=False),
    sa.Column('member_id', sa.String(length=40), nullable=False),
    sa.Column('choice', sa.String(length=8), nullable=False),
    sa.Column('cast_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("choice IN ('yes', 'no', 'abstain')", name=op.f('ck_ballots_choice')),
    sa.ForeignKeyConstraint(['proposal_id', 'member_id'], ['proposal_voters.proposal_id', 'proposal_voters.member_id'], name='fk_ballots_voter_proposal_voters'),
    sa.PrimaryKeyConstraint('proposal_id', 'member_id', name=op.f('pk_ballots'))
    )

    op.create_unique_constraint(op.f('uq_fare_rules_proposal_id'), 'fare_rules', ['proposal_id'])
    op.create_foreign_key(op.f('fk_fare_rules_proposal_id_proposals'), 'fare_rules', 'proposals', ['proposal_id'], ['id'])

    # -- the audit log ------------------------------------------------------------------
    op.create_table('audit_log',
    sa.Column('seq', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('at', sa.Text(), nullable=False),
    sa.Column('kind', sa.String(length=64), nullable=False),
    sa.Column('payload', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.CheckConstraint('seq >= 1', name=op.f('ck_audit_log_seq_positive')),
    sa.CheckConstraint("hash ~ '^[0-9a-f]{64}$' AND prev_hash ~ '^[0-9a-f]{64}$'", name=op.f('ck_audit_log_hex')),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_audit_log')),
    sa.UniqueConstraint('hash', name=op.f('uq_audit_log_hash')),
    sa.UniqueConstraint('prev_hash', name=op.f('uq_audit_log_prev_hash'))
    )

    # Append-only, and fare rules immutable, for every role: a trigger fires for the
    # table's owner and superusers too (only ALTER TABLE ... DISABLE TRIGGER, which needs
    # ownership, gets past it). The REVOKE covers deployments whose application role is
    # not the owner.
    op.execute(
        """
        CREATE FUNCTION coop_refuse_change() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
        "FOR EACH ROW EXECUTE FUNCTION coop_refuse_change()"
    )
    op.execute(
        "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
        "FOR EACH STATEMENT EXECUTE FUNCTION coop_refuse_change()"
    )
    op.execute("REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM PUBLIC")
    op.execute(
        "CREATE TRIGGER fare_rules_immutable BEFORE UPDATE OR DELETE ON fare_rules "
        "FOR EACH ROW EXECUTE FUNCTION coop_refuse_change()"
    )
    op.execute(
        "CREATE TRIGGER fare_rules_no_truncate BEFORE TRUNCATE ON fare_rules "
        "FOR EACH STATEMENT EXECUTE FUNCTION coop_refuse_change()"
    )
    op.execute("REVOKE UPDATE, DELETE, TRUNCATE ON fare_rules FROM PUBLIC")

    # -- seed: the rules already in force open the chain ---------------------------------
    bind = op.get_bind()
    rows = bind.execute(
        sa.text(
            "SELECT version, base_cents, per_km_cents, per_minute_cents, minimum_cents, "
            "cancellation_fee_cents, currency, cost_recovery_mode, fairness_weight_permille, "
            "adopted_at, proposal_id FROM fare_rules ORDER BY version"
        )
    ).mappings().all()
    prev_hash = GENESIS_HASH
    at = _at(datetime.now(timezone.utc))
    for seq, row in enumerate(rows, start=1):
        payload = {
            "version": row["version"],
            "proposal_id": row["proposal_id"],
            "base_cents": row["base_cents"],
            "per_km_cents": row["per_km_cents"],
            "per_minute_cents": row["per_minute_cents"],
            "minimum_cents": row["minimum_cents"],
            "cancellation_fee_cents": row["cancellation_fee_cents"],
            "currency": row["currency"],
            "cost_recovery_mode": row["cost_recovery_mode"],
            "fairness_weight_permille": row["fairness_weight_permille"],
            "adopted_at": _at(row["adopted_at"]),
        }
        body = _jcs({"seq": seq, "at": at, "kind": "rule.adopted", "payload": payload})
        digest = hashlib.sha256((prev_hash + body).encode("utf-8")).hexdigest()
        bind.execute(
            sa.text(
                "INSERT INTO audit_log (seq, at, kind, payload, prev_hash, hash) "
                "VALUES (:seq, :at, 'rule.adopted', CAST(:payload AS jsonb), :prev, :hash)"
            ),
            {"seq": seq, "at": at, "payload": _jcs(payload), "prev": prev_hash, "hash": digest},
        )
        prev_hash = digest


def downgrade() -> None:
    op.execute("DROP TRIGGER fare_rules_no_truncate ON fare_rules")
    op.execute("DROP TRIGGER fare_rules_immutable ON fare_rules")
    op.execute("DROP TRIGGER audit_log_no_truncate ON audit_log")
    op.execute("DROP TRIGGER audit_log_append_only ON audit_log")
    op.execute("DROP FUNCTION coop_refuse_change()")
    op.drop_table('audit_log')
    op.drop_constraint(op.f('fk_fare_rules_proposal_id_proposals'), 'fare_rules', type_='foreignkey')
    op.drop_constraint(op.f('uq_fare_rules_proposal_id'), 'fare_rules', type_='unique')
    op.drop_table('ballots')
    op.drop_table('proposal_voters')
    op.drop_index('ix_proposals_status_id', table_name='proposals')
    op.drop_index('ix_proposals_open_closes_at', table_name='proposals', postgresql_where=sa.text("status = 'open'"))
    op.drop_table('proposals')
    op.drop_constraint(op.f('ck_fare_rules_fairness_weight'), 'fare_rules', type_='check')
    op.drop_column('fare_rules', 'fairness_weight_permille')
