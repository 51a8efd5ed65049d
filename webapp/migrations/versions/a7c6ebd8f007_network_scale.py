"""network scale: lean hot paths

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
    pass


def downgrade():
    pass
