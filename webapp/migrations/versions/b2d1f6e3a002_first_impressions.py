"""first impressions: viewers' time zones, demo data no real worker can claim

Revision ID: b2d1f6e3a002
Revises: a1c0e5d2f001
Create Date: 2026-12-03 10:40:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'b2d1f6e3a002'
down_revision = 'a1c0e5d2f001'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
