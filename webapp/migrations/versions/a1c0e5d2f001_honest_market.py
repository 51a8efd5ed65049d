"""honest market: per-account failures, mining report rules and the operator's rate table

Revision ID: a1c0e5d2f001
Revises: 9dc9710fa3d7
Create Date: 2026-12-03 10:40:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'a1c0e5d2f001'
down_revision = '9dc9710fa3d7'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('mining_rates',
    sa.Column('coin', sa.String(length=16), nullable=False),
    sa.Column('micros_per_mh_day', sa.BigInteger(), nullable=False),
    sa.Column('max_mh_per_gpu', sa.Float(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('coin', name=op.f('pk_mining_rates'))
    )
    op.create_table('account_actions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.Enum('worker_created', 'worker_paired', name='accountactionkind', native_enum=False, length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_account_actions_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_account_actions'))
    )
    with op.batch_alter_table('account_actions', schema=None) as batch_op:
        batch_op.create_index('ix_account_actions_user_kind', ['user_id', 'kind', 'created_at'], unique=False)

    with op.batch_alter_table('mining_reports', schema=None) as batch_op:
        batch_op.add_column(sa.Column('period_start', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('hashrate_reported', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('shares_accepted', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('shares_rejected', sa.Integer(), nullable=True))

    with op.batch_alter_table('task_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('provider_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('final', sa.Boolean(), nullable=True))
        batch_op.create_index('ix_task_events_job_provider', ['job_id', 'provider_id', 'kind'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_task_events_provider_id_users'), 'users', ['provider_id'], ['id'])
    # Failures recorded before this counted per worker only: give them their account, so the
    # per-account counts start from the whole history.
    op.execute("UPDATE task_events SET provider_id = (SELECT owner_id FROM workers WHERE workers.id = "
               "task_events.worker_id) WHERE kind = 'failed' AND worker_id IS NOT NULL")

    with op.batch_alter_table('workers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('mining_enabled_at', sa.DateTime(timezone=True), nullable=True))
    # Workers mining already: their reports count from now on, never from before the portal watched.
    import json
    from datetime import datetime, timezone
    bind = op.get_bind()
    now = datetime.now(timezone.utc)
    for worker_id, config in bind.execute(sa.text("SELECT id, mining_config FROM workers")).all():
        config = json.loads(config) if isinstance(config, str) else (config or {})
        if isinstance(config, dict) and config.get("enabled") is True:
            bind.execute(sa.text("UPDATE workers SET mining_enabled_at = :now WHERE id = :id"),
                         {"now": now, "id": worker_id})


def downgrade():
    with op.batch_alter_table('workers', schema=None) as batch_op:
        batch_op.drop_column('mining_enabled_at')

    with op.batch_alter_table('task_events', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_task_events_provider_id_users'), type_='foreignkey')
        batch_op.drop_index('ix_task_events_job_provider')
        batch_op.drop_column('final')
        batch_op.drop_column('provider_id')

    with op.batch_alter_table('mining_reports', schema=None) as batch_op:
        batch_op.drop_column('shares_rejected')
        batch_op.drop_column('shares_accepted')
        batch_op.drop_column('hashrate_reported')
        batch_op.drop_column('period_start')

    with op.batch_alter_table('account_actions', schema=None) as batch_op:
        batch_op.drop_index('ix_account_actions_user_kind')

    op.drop_table('account_actions')
    op.drop_table('mining_rates')
