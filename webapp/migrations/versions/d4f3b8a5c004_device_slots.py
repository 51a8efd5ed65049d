"""device slots: one running task per GPU of a node

Nothing to change: the schema these need came earlier (9dc9710fa3d7 added tasks.slot and the unique
running-slot index uq_tasks_running_slot, the one rule dispatch relies on under racing claims), and a
worker's slots are its hello report, kept in workers.capabilities beside the job types dispatch reads
with them. Per-slot state and earnings are the tasks' rows grouped by slot (services/slots.py), so
no table of slots can drift from them. This revision stays in the chain so later ones keep their order.

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
    pass  # see the docstring: nothing to add


def downgrade():
    pass
