"""network scale: a job's tasks by status in the order they finished, for a completion's verified peers

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


def downgrade():
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.drop_index('ix_tasks_job_status_finished')
        batch_op.create_index('ix_tasks_job_status', ['job_id', 'status'], unique=False)
