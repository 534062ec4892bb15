"""jobs.waits_for: the jobs that must succeed before a job is queued (status `waiting` until then);
jobs.provenance: versions, machine, precision policy, seed and data fingerprint of the process that ran it

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None
COLUMNS = ('waits_for', 'provenance')


def upgrade() -> None:
    with op.batch_alter_table('jobs') as batch:
        for name in COLUMNS:
            batch.add_column(sa.Column(name, sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('jobs') as batch:
        for name in reversed(COLUMNS):
            batch.drop_column(name)
