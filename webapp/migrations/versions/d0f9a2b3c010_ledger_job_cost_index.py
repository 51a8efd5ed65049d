"""network scale: a job's cost summed from an index alone, for each completion of a job with a budget

Revision ID: d0f9a2b3c010
Revises: c9e8f1a2b009
Create Date: 2026-12-04 19:40:00

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = 'd0f9a2b3c010'
down_revision = 'c9e8f1a2b009'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('ledger_entries', schema=None) as batch_op:
        batch_op.drop_index('ix_ledger_job')
        batch_op.create_index('ix_ledger_job_cost', ['job_id', 'kind', 'amount_micros'], unique=False)


def downgrade():
    with op.batch_alter_table('ledger_entries', schema=None) as batch_op:
        batch_op.drop_index('ix_ledger_job_cost')
        batch_op.create_index('ix_ledger_job', ['job_id'], unique=False)
