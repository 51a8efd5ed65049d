"""network scale: an index for a completion's question whether the job still runs

Revision ID: b8d7e0f1a008
Revises: a7c6ebd8f007
Create Date: 2026-12-03 19:15:00

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = 'b8d7e0f1a008'
down_revision = 'a7c6ebd8f007'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.create_index('ix_tasks_job_status', ['job_id', 'status'], unique=False)


def downgrade():
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.drop_index('ix_tasks_job_status')
