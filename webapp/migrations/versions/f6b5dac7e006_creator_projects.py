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
    op.create_table('scene_drafts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=False),
    sa.Column('filename', sa.String(length=255), nullable=False),
    sa.Column('main', sa.String(length=255), nullable=False),
    sa.Column('reading', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['owner_id'], ['users.id'], name=op.f('fk_scene_drafts_owner_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_scene_drafts'))
    )
    with op.batch_alter_table('scene_drafts', schema=None) as batch_op:
        batch_op.create_index('ix_scene_drafts_owner', ['owner_id', 'created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_scene_drafts_expires_at'), ['expires_at'], unique=False)
    op.create_table('draft_files',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('draft_id', sa.Integer(), nullable=False),
    sa.Column('path', sa.String(length=255), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['draft_id'], ['scene_drafts.id'], name=op.f('fk_draft_files_draft_id_scene_drafts')),
    sa.ForeignKeyConstraint(['sha256'], ['stored_files.sha256'], name=op.f('fk_draft_files_sha256_stored_files')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_draft_files')),
    sa.UniqueConstraint('draft_id', 'path', name='uq_draft_files_draft_path')
    )


def downgrade():
    op.drop_table('draft_files')
    with op.batch_alter_table('scene_drafts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_scene_drafts_expires_at'))
        batch_op.drop_index('ix_scene_drafts_owner')
    op.drop_table('scene_drafts')
