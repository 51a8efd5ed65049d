"""fleet operations and alerts: worker tags, alert settings and deliveries

Revision ID: e5a4c9b6d005
Revises: d4f3b8a5c004
Create Date: 2026-12-03 14:15:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'e5a4c9b6d005'
down_revision = 'd4f3b8a5c004'
branch_labels = None
depends_on = None

_KINDS = ('offline', 'error', 'suspended', 'recovered', 'digest')


def upgrade():
    with op.batch_alter_table('workers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('paused_at', sa.DateTime(timezone=True), nullable=True))

    op.create_table('worker_tags',
    sa.Column('worker_id', sa.Integer(), nullable=False),
    sa.Column('tag', sa.String(length=32), nullable=False),
    sa.ForeignKeyConstraint(['worker_id'], ['workers.id'], name=op.f('fk_worker_tags_worker_id_workers')),
    sa.PrimaryKeyConstraint('worker_id', 'tag', name=op.f('pk_worker_tags'))
    )
    with op.batch_alter_table('worker_tags', schema=None) as batch_op:
        batch_op.create_index('ix_worker_tags_tag', ['tag', 'worker_id'], unique=False)

    op.create_table('alert_settings',
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('on_offline', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('on_error', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('on_suspended', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('daily_digest', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('email_enabled', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('email_to', sa.String(length=254), nullable=True),
    sa.Column('webhook_url', sa.String(length=500), nullable=True),
    sa.Column('webhook_secret_sealed', sa.String(length=255), nullable=True),
    sa.Column('webhook_secret_prefix', sa.String(length=16), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_alert_settings_user_id_users')),
    sa.PrimaryKeyConstraint('user_id', name=op.f('pk_alert_settings'))
    )

    op.create_table('worker_incidents',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('worker_id', sa.Integer(), nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.Enum(*_KINDS, name='alertkind', native_enum=False, length=16), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('message', sa.String(length=500), nullable=True),
    sa.ForeignKeyConstraint(['owner_id'], ['users.id'], name=op.f('fk_worker_incidents_owner_id_users')),
    sa.ForeignKeyConstraint(['worker_id'], ['workers.id'], name=op.f('fk_worker_incidents_worker_id_workers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_worker_incidents'))
    )
    with op.batch_alter_table('worker_incidents', schema=None) as batch_op:
        batch_op.create_index('ix_worker_incidents_owner_started', ['owner_id', 'started_at'], unique=False)
        batch_op.create_index('uq_worker_incidents_open', ['worker_id', 'kind'], unique=True,
                              sqlite_where=sa.text('ended_at IS NULL'),
                              postgresql_where=sa.text('ended_at IS NULL'))

    op.create_table('alert_deliveries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('incident_id', sa.Integer(), nullable=True),
    sa.Column('channel', sa.Enum('email', 'webhook', name='alertchannel', native_enum=False, length=16), nullable=False),
    sa.Column('kind', sa.Enum(*_KINDS, name='alertkind', native_enum=False, length=16), nullable=False),
    sa.Column('key', sa.String(length=120), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('target', sa.String(length=500), nullable=False),
    sa.Column('state', sa.Enum('pending', 'sent', 'failed', name='deliverystate', native_enum=False, length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.String(length=500), nullable=True),
    sa.Column('response_status', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['incident_id'], ['worker_incidents.id'], name=op.f('fk_alert_deliveries_incident_id_worker_incidents')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_alert_deliveries_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alert_deliveries')),
    sa.UniqueConstraint('key', name=op.f('uq_alert_deliveries_key'))
    )
    with op.batch_alter_table('alert_deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_alert_deliveries_due', ['state', 'next_attempt_at'], unique=False)
        batch_op.create_index('ix_alert_deliveries_user_created', ['user_id', 'created_at'], unique=False)


def downgrade():
    with op.batch_alter_table('alert_deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_alert_deliveries_user_created')
        batch_op.drop_index('ix_alert_deliveries_due')
    op.drop_table('alert_deliveries')

    with op.batch_alter_table('worker_incidents', schema=None) as batch_op:
        batch_op.drop_index('uq_worker_incidents_open', sqlite_where=sa.text('ended_at IS NULL'),
                            postgresql_where=sa.text('ended_at IS NULL'))
        batch_op.drop_index('ix_worker_incidents_owner_started')
    op.drop_table('worker_incidents')

    op.drop_table('alert_settings')

    with op.batch_alter_table('worker_tags', schema=None) as batch_op:
        batch_op.drop_index('ix_worker_tags_tag')
    op.drop_table('worker_tags')

    with op.batch_alter_table('workers', schema=None) as batch_op:
        batch_op.drop_column('paused_at')
