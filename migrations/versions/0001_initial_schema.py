"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-22

PostGIS, identity (riders, members, vehicles), fare rules with version 1 seeded,
trips with geography(Point) pickup/drop-off and their state history, offers, and
service areas.
"""

import geoalchemy2
import sqlalchemy as sa
from alembic import op


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    op.create_table('fare_rules',
    sa.Column('version', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('base_cents', sa.Integer(), nullable=False),
    sa.Column('per_km_cents', sa.Integer(), nullable=False),
    sa.Column('per_minute_cents', sa.Integer(), nullable=False),
    sa.Column('minimum_cents', sa.Integer(), nullable=False),
    sa.Column('cancellation_fee_cents', sa.Integer(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('cost_recovery_mode', sa.String(length=16), nullable=False),
    sa.Column('adopted_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('proposal_id', sa.String(length=40), nullable=True),
    sa.CheckConstraint("cost_recovery_mode IN ('per_trip', 'dues')", name=op.f('ck_fare_rules_mode')),
    sa.CheckConstraint('base_cents >= 0 AND per_km_cents >= 0 AND per_minute_cents >= 0 AND minimum_cents >= 0 AND cancellation_fee_cents >= 0', name=op.f('ck_fare_rules_non_negative')),
    sa.PrimaryKeyConstraint('version', name=op.f('pk_fare_rules'))
    )
    op.create_table('members',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('phone', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=16), server_default='active', nullable=False),
    sa.Column('admitted_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('removed_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('active', 'suspended', 'removed')", name=op.f('ck_members_status')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_members'))
    )
    op.create_table('riders',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('phone', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_riders'))
    )
    op.create_table('service_areas',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('polygon', geoalchemy2.types.Geography(geometry_type='POLYGON', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeogFromText', name='geography', nullable=False), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_service_areas'))
    )
    op.create_index('idx_service_areas_polygon', 'service_areas', ['polygon'], unique=False, postgresql_using='gist')
    op.create_table('trips',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('rider_id', sa.String(length=40), nullable=False),
    sa.Column('driver_id', sa.String(length=40), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('region', sa.String(length=32), nullable=False),
    sa.Column('pickup', geoalchemy2.types.Geography(geometry_type='POINT', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeogFromText', name='geography', nullable=False), nullable=False),
    sa.Column('dropoff', geoalchemy2.types.Geography(geometry_type='POINT', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeogFromText', name='geography', nullable=False), nullable=False),
    sa.Column('requested_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('assigned_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('arrived_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cancelled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('expired_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cancelled_by', sa.String(length=16), nullable=True),
    sa.Column('fare_rule_version', sa.Integer(), nullable=False),
    sa.Column('distance_m', sa.Integer(), nullable=False),
    sa.Column('duration_s', sa.Integer(), nullable=False),
    sa.Column('pickup_eta_s', sa.Integer(), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('fare_total_cents', sa.Integer(), nullable=False),
    sa.Column('base_cents', sa.Integer(), nullable=False),
    sa.Column('distance_cents', sa.Integer(), nullable=False),
    sa.Column('time_cents', sa.Integer(), nullable=False),
    sa.Column('minimum_topup_cents', sa.Integer(), nullable=False),
    sa.Column('cost_recovery_cents', sa.Integer(), nullable=False),
    sa.Column('platform_commission_cents', sa.Integer(), nullable=False),
    sa.Column('idempotency_key', sa.String(length=200), nullable=True),
    sa.Column('request_fingerprint', sa.String(length=64), nullable=True),
    sa.CheckConstraint("status IN ('requested', 'assigned', 'arrived', 'in_progress', 'completed', 'cancelled', 'expired')", name=op.f('ck_trips_status')),
    sa.CheckConstraint('fare_total_cents = base_cents + distance_cents + time_cents + cost_recovery_cents + platform_commission_cents', name=op.f('ck_trips_fare_parts_add_up')),
    sa.CheckConstraint('minimum_topup_cents BETWEEN 0 AND base_cents', name=op.f('ck_trips_topup')),
    sa.CheckConstraint('platform_commission_cents = 0', name=op.f('ck_trips_zero_commission')),
    sa.ForeignKeyConstraint(['driver_id'], ['members.id'], name=op.f('fk_trips_driver_id_members')),
    sa.ForeignKeyConstraint(['fare_rule_version'], ['fare_rules.version'], name=op.f('fk_trips_fare_rule_version_fare_rules')),
    sa.ForeignKeyConstraint(['rider_id'], ['riders.id'], name=op.f('fk_trips_rider_id_riders')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_trips'))
    )
    op.create_index('idx_trips_pickup', 'trips', ['pickup'], unique=False, postgresql_using='gist')
    op.create_index('ix_trips_driver_completed_at', 'trips', ['driver_id', 'completed_at'], unique=False)
    op.create_index('ix_trips_rider_requested_at', 'trips', ['rider_id', 'requested_at'], unique=False)
    op.create_index('ix_trips_status_requested_at', 'trips', ['status', 'requested_at'], unique=False)
    op.create_index('uq_trips_driver_active', 'trips', ['driver_id'], unique=True, postgresql_where=sa.text("status IN ('assigned', 'arrived', 'in_progress')"))
    op.create_index('uq_trips_rider_active', 'trips', ['rider_id'], unique=True, postgresql_where=sa.text("status IN ('requested', 'assigned', 'arrived', 'in_progress')"))
    op.create_index('uq_trips_rider_idempotency_key', 'trips', ['rider_id', 'idempotency_key'], unique=True, postgresql_where=sa.text('idempotency_key IS NOT NULL'))
    op.create_table('vehicles',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('member_id', sa.String(length=40), nullable=False),
    sa.Column('plate', sa.String(length=20), nullable=False),
    sa.Column('seats', sa.Integer(), nullable=False),
    sa.CheckConstraint('seats BETWEEN 1 AND 16', name=op.f('ck_vehicles_seats')),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_vehicles_member_id_members')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_vehicles'))
    )
    op.create_index(op.f('ix_vehicles_member_id'), 'vehicles', ['member_id'], unique=False)
    op.create_table('offers',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('trip_id', sa.String(length=40), nullable=False),
    sa.Column('driver_id', sa.String(length=40), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('pickup_eta_s', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('responded_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('pending', 'accepted', 'declined', 'expired', 'withdrawn')", name=op.f('ck_offers_status')),
    sa.ForeignKeyConstraint(['driver_id'], ['members.id'], name=op.f('fk_offers_driver_id_members')),
    sa.ForeignKeyConstraint(['trip_id'], ['trips.id'], name=op.f('fk_offers_trip_id_trips')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_offers'))
    )
    op.create_index('ix_offers_driver_created_at', 'offers', ['driver_id', 'created_at'], unique=False)
    op.create_index(op.f('ix_offers_trip_id'), 'offers', ['trip_id'], unique=False)
    op.create_index('uq_offers_driver_pending', 'offers', ['driver_id'], unique=True, postgresql_where=sa.text("status = 'pending'"))
    op.create_index('uq_offers_trip_pending', 'offers', ['trip_id'], unique=True, postgresql_where=sa.text("status = 'pending'"))
    op.create_table('trip_events',
    sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('trip_id', sa.String(length=40), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('actor_role', sa.String(length=16), nullable=False),
    sa.Column('actor_id', sa.String(length=40), nullable=True),
    sa.ForeignKeyConstraint(['trip_id'], ['trips.id'], name=op.f('fk_trip_events_trip_id_trips')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_trip_events'))
    )
    op.create_index(op.f('ix_trip_events_trip_id'), 'trip_events', ['trip_id'], unique=False)

    # Fare rule version 1: the co-op's opening rule, until members vote another.
    # $2.50 base, $1.20/km, $0.35/min, $8.00 minimum, $5.00 cancellation fee, USD;
    # costs recovered per trip (zero until a budget is published).
    op.execute(
        "INSERT INTO fare_rules (version, base_cents, per_km_cents, per_minute_cents, "
        "minimum_cents, cancellation_fee_cents, currency, cost_recovery_mode) "
        "VALUES (1, 250, 120, 35, 800, 500, 'USD', 'per_trip')"
    )


def downgrade() -> None:
    op.drop_index(op.f('ix_trip_events_trip_id'), table_name='trip_events')
    op.drop_table('trip_events')
    op.drop_index('uq_offers_trip_pending', table_name='offers', postgresql_where=sa.text("status = 'pending'"))
    op.drop_index('uq_offers_driver_pending', table_name='offers', postgresql_where=sa.text("status = 'pending'"))
    op.drop_index(op.f('ix_offers_trip_id'), table_name='offers')
    op.drop_index('ix_offers_driver_created_at', table_name='offers')
    op.drop_table('offers')
    op.drop_index(op.f('ix_vehicles_member_id'), table_name='vehicles')
    op.drop_table('vehicles')
    op.drop_index('uq_trips_rider_idempotency_key', table_name='trips', postgresql_where=sa.text('idempotency_key IS NOT NULL'))
    op.drop_index('uq_trips_rider_active', table_name='trips', postgresql_where=sa.text("status IN ('requested', 'assigned', 'arrived', 'in_progress')"))
    op.drop_index('uq_trips_driver_active', table_name='trips', postgresql_where=sa.text("status IN ('assigned', 'arrived', 'in_progress')"))
    op.drop_index('ix_trips_status_requested_at', table_name='trips')
    op.drop_index('ix_trips_rider_requested_at', table_name='trips')
    op.drop_index('ix_trips_driver_completed_at', table_name='trips')
    op.drop_index('idx_trips_pickup', table_name='trips', postgresql_using='gist')
    op.drop_table('trips')
    op.drop_index('idx_service_areas_polygon', table_name='service_areas', postgresql_using='gist')
    op.drop_table('service_areas')
    op.drop_table('riders')
    op.drop_table('members')
    op.drop_table('fare_rules')
