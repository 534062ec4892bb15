"""The model registry: models.name and models.version (NAME:VERSION, unique), model_aliases (NAME@ALIAS -> a
version); models registered before get their train job's name (or preset) and versions in the order made

Revision ID: 0011
Revises: 0010
"""

import re

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def _slug(text: str) -> str:  # the same rule as worker.registry.model_name
    return re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._")[:128] or "model"


def upgrade() -> None:
    with op.batch_alter_table('models') as batch:
        batch.add_column(sa.Column('name', sa.String(128), nullable=True))
        batch.add_column(sa.Column('version', sa.Integer(), nullable=True))
        batch.create_index('ix_models_name', ['name'])
        batch.create_unique_constraint('uq_models_name_version', ['name', 'version'])
    op.create_table(
        'model_aliases',
        sa.Column('name', sa.String(128), primary_key=True),
        sa.Column('alias', sa.String(64), primary_key=True),
        sa.Column('version', sa.Integer(), nullable=False),
    )
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT m.id, j.name, m.preset FROM models m JOIN jobs j ON j.id = m.job_id "
                                "ORDER BY m.id")).all()
    versions: dict[str, int] = {}
    for model_id, job_name, preset in rows:
        name = _slug(job_name or preset)
        versions[name] = versions.get(name, 0) + 1
        bind.execute(sa.text("UPDATE models SET name = :n, version = :v WHERE id = :i"),
                     {"n": name, "v": versions[name], "i": model_id})


def downgrade() -> None:
    op.drop_table('model_aliases')
    with op.batch_alter_table('models') as batch:
        batch.drop_constraint('uq_models_name_version', type_='unique')
        batch.drop_index('ix_models_name')
        batch.drop_column('version')
        batch.drop_column('name')
