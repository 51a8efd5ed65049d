"""honest market: per-account failures, mining report rules and the operator's rate table

Revision ID: a1c0e5d2f001
Revises: 9dc9710fa3d7
Create Date: 2026-12-03 10:40:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'a1c0e5d2f001'
down_revision = '9dc9710fa3d7'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
