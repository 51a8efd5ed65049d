"""network scale: a job's hot questions read from indexes in order or alone (its latest verified peers,
a budgeted job's cost)

Revision ID: c9e8f1a2b009
Revises: b8d7e0f1a008
Create Date: 2026-12-04 19:30:00

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = 'c9e8f1a2b009'
down_revision = 'b8d7e0f1a008'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.drop_index('ix_tasks_job_status')
        batch_op.create_index('ix_tasks_job_status_finished', ['job_id', 'status', 'finished_at'], unique=False)
    with op.batch_alter_table('ledger_entries', schema=None) as batch_op:
        batch_op.drop_index('ix_ledger_job')
        batch_op.create_index('ix_ledger_job_cost', ['job_id', 'kind', 'amount_micros'], unique=False)


def downgrade():
    with op.batch_alter_table('ledger_entries', schema=None) as batch_op:
        batch_op.drop_index('ix_ledger_job_cost')
        batch_op.create_index('ix_ledger_job', ['job_id'], unique=False)
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.drop_index('ix_tasks_job_status_finished')
        batch_op.create_index('ix_tasks_job_status', ['job_id', 'status'], unique=False)
