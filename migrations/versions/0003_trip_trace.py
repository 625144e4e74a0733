"""trip trace

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22

Sampled driver positions during each trip, and where it arrived, started and completed,
written when the trip ends (live positions stay in Redis).
"""

import geoalchemy2
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "trip_trace",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("trip_id", sa.String(length=40), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column(
            "position",
            geoalchemy2.types.Geography(
                geometry_type="POINT", srid=4326, dimension=2, spatial_index=False,
                from_text="ST_GeogFromText", name="geography", nullable=False,
            ),
            nullable=False,
        ),
        sa.CheckConstraint(
            "kind IN ('track', 'arrived', 'started', 'completed', 'cancelled')",
            name=op.f("ck_trip_trace_kind"),
        ),
        sa.ForeignKeyConstraint(
            ["trip_id"], ["trips.id"], name=op.f("fk_trip_trace_trip_id_trips")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trip_trace")),
    )
    op.create_index("ix_trip_trace_trip_at", "trip_trace", ["trip_id", "at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_trip_trace_trip_at", table_name="trip_trace")
    op.drop_table("trip_trace")
