"""The artifact store: stored_files (a job's output path -> its content's SHA-256) for every store but `home`,
and blobs + blob_chunks holding the contents in the `database` store

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'stored_files',
        sa.Column('id', sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column('path_hash', sa.String(64), nullable=False, unique=True),
        sa.Column('path', sa.Text(), nullable=False),
        sa.Column('job_id', sa.String(32), sa.ForeignKey('jobs.id', ondelete='CASCADE'), nullable=False),
        sa.Column('sha256', sa.String(64), nullable=False),
        sa.Column('size', sa.BigInteger(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index('ix_stored_files_job_id', 'stored_files', ['job_id'])
    op.create_index('ix_stored_files_sha256', 'stored_files', ['sha256'])
    op.create_table(
        'blobs',
        sa.Column('sha256', sa.String(64), primary_key=True),
        sa.Column('size', sa.BigInteger(), nullable=False),
    )
    op.create_table(
        'blob_chunks',
        sa.Column('sha256', sa.String(64), primary_key=True),
        sa.Column('seq', sa.Integer(), primary_key=True),
        sa.Column('data', sa.LargeBinary(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table('blob_chunks')
    op.drop_table('blobs')
    op.drop_table('stored_files')
