"""indexes for the filtered, paged prediction queries of jobs with millions of rows

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

# (job_id, shard, id) replaces (job_id, shard): it serves the same deletes and also the page order.
INDEXES = {'ix_predictions_job_shard_id': ['job_id', 'shard', 'id'],
           'ix_predictions_job_predicted': ['job_id', 'predicted'],
           'ix_predictions_job_confidence': ['job_id', 'confidence']}


def upgrade() -> None:
    op.drop_index('ix_predictions_job_shard', table_name='predictions')
    for name, columns in INDEXES.items():
        op.create_index(name, 'predictions', columns, unique=False)


def downgrade() -> None:
    for name in INDEXES:
        op.drop_index(name, table_name='predictions')
    op.create_index('ix_predictions_job_shard', 'predictions', ['job_id', 'shard'], unique=False)
