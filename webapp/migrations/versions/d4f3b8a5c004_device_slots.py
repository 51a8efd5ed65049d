"""device slots: one running task per GPU of a node

Revision ID: d4f3b8a5c004
Revises: c3e2a7f4b003
Create Date: 2026-12-03 14:15:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'd4f3b8a5c004'
down_revision = 'c3e2a7f4b003'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
