"""conformal prediction sets on predictions, and the index that filters them by size

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('predictions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('prediction_set', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('set_size', sa.Integer(), nullable=True))
        batch_op.create_index('ix_predictions_job_set_size', ['job_id', 'set_size'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('predictions', schema=None) as batch_op:
        batch_op.drop_index('ix_predictions_job_set_size')
        batch_op.drop_column('set_size')
        batch_op.drop_column('prediction_set')
