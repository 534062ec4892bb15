"""Runs as experiments: jobs.name and jobs.note, job_tags (one row per tag, so a tag filter is an indexed
lookup on both databases), jobs.history (the epochs finished so far, written as they end) and jobs.summary
(the kind's headline figures, which `jobs list --filter/--sort` compare in SQL)

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None
COLUMNS = {'name': sa.String(128), 'note': sa.Text(), 'history': sa.JSON(), 'summary': sa.JSON()}


def upgrade() -> None:
    with op.batch_alter_table('jobs') as batch:
        for name, type_ in COLUMNS.items():
            batch.add_column(sa.Column(name, type_, nullable=True))
        batch.create_index('ix_jobs_name', ['name'])
    op.create_table(
        'job_tags',
        sa.Column('job_id', sa.String(32), sa.ForeignKey('jobs.id', ondelete='CASCADE'), primary_key=True),
        sa.Column('tag', sa.String(64), primary_key=True),
    )
    op.create_index('ix_job_tags_tag', 'job_tags', ['tag'])


def downgrade() -> None:
    op.drop_index('ix_job_tags_tag', 'job_tags')
    op.drop_table('job_tags')
    with op.batch_alter_table('jobs') as batch:
        batch.drop_index('ix_jobs_name')
        for name in reversed(COLUMNS):
            batch.drop_column(name)
