"""indexes for the filtered, paged prediction queries of jobs with millions of rows

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

INDEXES = {'ix_predictions_job_predicted': ['job_id', 'predicted'],
           'ix_predictions_job_confidence': ['job_id', 'confidence']}


def upgrade() -> None:
    for name, columns in INDEXES.items():
        op.create_index(name, 'predictions', columns, unique=False)


def downgrade() -> None:
    for name in INDEXES:
        op.drop_index(name, table_name='predictions')
