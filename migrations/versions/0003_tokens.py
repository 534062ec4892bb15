"""API tokens (hashed, scoped), who submitted each job, unguessable artifact keys

Revision ID: 0003
Revises: 0002
"""

import uuid

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('tokens',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.Column('scope', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('hash'),
    sa.UniqueConstraint('name')
    )
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('submitted_by', sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f('ix_jobs_submitted_by'), ['submitted_by'], unique=False)
    with op.batch_alter_table('artifacts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('key', sa.String(length=32), nullable=True))
    # Existing artifacts get random keys too, before the column becomes required and unique.
    conn = op.get_bind()
    artifacts = sa.table('artifacts', sa.column('id', sa.Integer), sa.column('key', sa.String))
    for (artifact_id,) in conn.execute(sa.select(artifacts.c.id)).all():
        conn.execute(artifacts.update().where(artifacts.c.id == artifact_id).values(key=uuid.uuid4().hex))
    with op.batch_alter_table('artifacts', schema=None) as batch_op:
        batch_op.alter_column('key', existing_type=sa.String(length=32), nullable=False)
        batch_op.create_unique_constraint('uq_artifacts_key', ['key'])


def downgrade() -> None:
    with op.batch_alter_table('artifacts', schema=None) as batch_op:
        batch_op.drop_constraint('uq_artifacts_key', type_='unique')
        batch_op.drop_column('key')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_jobs_submitted_by'))
        batch_op.drop_column('submitted_by')
    op.drop_table('tokens')
