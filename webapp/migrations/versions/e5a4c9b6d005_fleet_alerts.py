"""fleet operations and alerts: worker tags, alert settings and deliveries

Revision ID: e5a4c9b6d005
Revises: d4f3b8a5c004
Create Date: 2026-12-03 14:15:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'e5a4c9b6d005'
down_revision = 'd4f3b8a5c004'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
