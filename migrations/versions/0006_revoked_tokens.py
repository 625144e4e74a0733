"""revoked tokens

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22

The denylist of tokens revoked before their expiry (by ``jti``): a phone that signs out,
or a stolen token. Removed and suspended members need no rows here: their standing is
checked on every request and socket.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "revoked_tokens",
        sa.Column("jti", sa.String(length=64), nullable=False),
        sa.Column("subject_id", sa.String(length=40), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "revoked_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("jti", name=op.f("pk_revoked_tokens")),
    )
    op.create_index(
        op.f("ix_revoked_tokens_subject_id"), "revoked_tokens", ["subject_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_revoked_tokens_subject_id"), table_name="revoked_tokens")
    op.drop_table("revoked_tokens")
