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
    pass


def downgrade():
    pass
