"""Fair share, quotas and the audit log: jobs.priority, jobs.queue, jobs.task_id, tokens.max_jobs, audit_events

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs') as batch:
        batch.add_column(sa.Column('priority', sa.Integer(), nullable=False, server_default='1'))
        batch.add_column(sa.Column('queue', sa.String(16), nullable=True))
        batch.add_column(sa.Column('task_id', sa.String(64), nullable=True))
    with op.batch_alter_table('tokens') as batch:
        batch.add_column(sa.Column('max_jobs', sa.Integer(), nullable=True))
    op.create_table(
        'audit_events',
        sa.Column('id', sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('actor', sa.String(64), nullable=True),
        sa.Column('action', sa.String(32), nullable=False),
        sa.Column('target', sa.String(255), nullable=True),
        sa.Column('detail', sa.JSON(), nullable=True),
        sa.Column('address', sa.String(64), nullable=True),
    )
    op.create_index('ix_audit_events_at', 'audit_events', ['at'])
    op.create_index('ix_audit_events_actor', 'audit_events', ['actor'])
    op.create_index('ix_audit_events_action', 'audit_events', ['action'])


def downgrade() -> None:
    op.drop_table('audit_events')
    with op.batch_alter_table('tokens') as batch:
        batch.drop_column('max_jobs')
    with op.batch_alter_table('jobs') as batch:
        batch.drop_column('task_id')
        batch.drop_column('queue')
        batch.drop_column('priority')
