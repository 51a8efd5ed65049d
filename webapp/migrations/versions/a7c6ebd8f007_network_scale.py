"""network scale: an index for the idle claim's first question, and the claim order index as meant

Revision ID: a7c6ebd8f007
Revises: f6b5dac7e006
Create Date: 2026-12-03 14:15:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'a7c6ebd8f007'
down_revision = 'f6b5dac7e006'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.create_index('ix_tasks_queued_type', ['status', 'type'], unique=False)
    # The initial schema meant (status, priority DESC, id), but on SQLite the DESC was lost, so every claim
    # sorted the whole queue by id in a temporary B-tree. Written out, it means the same on both databases.
    op.execute('DROP INDEX ix_tasks_queue_order')
    op.execute('CREATE INDEX ix_tasks_queue_order ON tasks (status, priority DESC, id)')


def downgrade():
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.drop_index('ix_tasks_queued_type')
