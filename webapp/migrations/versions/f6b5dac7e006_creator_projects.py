"""creators' projects: scene drafts, project files, dependencies

Revision ID: f6b5dac7e006
Revises: e5a4c9b6d005
Create Date: 2026-12-03 14:15:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'f6b5dac7e006'
down_revision = 'e5a4c9b6d005'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
