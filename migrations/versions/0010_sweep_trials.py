"""Sweeps: jobs.trial, a sweep trial's own Optuna record (its pruner's attributes and whether it was pruned),
kept on the trial's row so the sweep's study can be rebuilt from convlens's rows after any restart

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs') as batch:
        batch.add_column(sa.Column('trial', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('jobs') as batch:
        batch.drop_column('trial')
