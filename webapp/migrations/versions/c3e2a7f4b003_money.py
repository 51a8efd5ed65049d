"""money you can see: payouts, creators' credit and job budgets

Revision ID: c3e2a7f4b003
Revises: b2d1f6e3a002
Create Date: 2026-12-03 10:40:00

"""
from alembic import op
import sqlalchemy as sa



# revision identifiers, used by Alembic.
revision = 'c3e2a7f4b003'
down_revision = 'b2d1f6e3a002'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('payouts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('provider_id', sa.Integer(), nullable=False),
    sa.Column('amount_micros', sa.BigInteger(), nullable=False),
    sa.Column('wallet_address', sa.String(length=128), nullable=False),
    sa.Column('state', sa.Enum('pending', 'paid', 'rejected', name='payoutstate', native_enum=False, length=16), nullable=False),
    sa.Column('idempotency_key', sa.String(length=80), nullable=False),
    sa.Column('reference', sa.String(length=255), nullable=True),
    sa.Column('reason', sa.String(length=255), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['provider_id'], ['users.id'], name=op.f('fk_payouts_provider_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payouts')),
    sa.UniqueConstraint('provider_id', 'idempotency_key', name='uq_payouts_provider_key')
    )
    with op.batch_alter_table('payouts', schema=None) as batch_op:
        batch_op.create_index('ix_payouts_provider_created', ['provider_id', 'created_at'], unique=False)
        batch_op.create_index('ix_payouts_state', ['state', 'created_at'], unique=False)

    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('budget_micros', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('paused_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('paused_reason', sa.String(length=255), nullable=True))

    with op.batch_alter_table('ledger_entries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('account_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('payout_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('key', sa.String(length=80), nullable=True))
        batch_op.create_index('ix_ledger_account_created', ['account_id', 'created_at'], unique=False)
        batch_op.create_index('ix_ledger_provider_created', ['provider_id', 'created_at'], unique=False)
        batch_op.create_unique_constraint(batch_op.f('uq_ledger_entries_key'), ['key'])
        batch_op.create_foreign_key(batch_op.f('fk_ledger_entries_payout_id_payouts'), 'payouts', ['payout_id'], ['id'])
        batch_op.create_foreign_key(batch_op.f('fk_ledger_entries_account_id_users'), 'users', ['account_id'], ['id'])


def downgrade():
    with op.batch_alter_table('ledger_entries', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_ledger_entries_account_id_users'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_ledger_entries_payout_id_payouts'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('uq_ledger_entries_key'), type_='unique')
        batch_op.drop_index('ix_ledger_provider_created')
        batch_op.drop_index('ix_ledger_account_created')
        batch_op.drop_column('key')
        batch_op.drop_column('payout_id')
        batch_op.drop_column('account_id')

    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('paused_reason')
        batch_op.drop_column('paused_at')
        batch_op.drop_column('budget_micros')

    with op.batch_alter_table('payouts', schema=None) as batch_op:
        batch_op.drop_index('ix_payouts_state')
        batch_op.drop_index('ix_payouts_provider_created')

    op.drop_table('payouts')
