"""Paths of job outputs stored relative to CONVLENS_HOME (`runs/ID/...`) in models, artifacts and job results,
so a moved or copied home works in place; the absolute paths stored before are rewritten (whichever home they
were written under: everything up to the last `/runs/ID/` goes)

Revision ID: 0012
Revises: 0011
"""

import json
import re

import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None
RUN_FILE = re.compile(r"^/(?:.*/)?(runs/[0-9a-f]{32}(?:/.*)?)$")
BATCH = 5000


def _relative(value):
    if isinstance(value, dict):
        return {k: _relative(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_relative(v) for v in value]
    if isinstance(value, str):
        m = RUN_FILE.match(value)
        return m.group(1) if m else value
    return value


def _rewrite_paths(bind, table: str) -> None:
    last = 0
    while True:
        rows = bind.execute(sa.text(f"SELECT id, path FROM {table} WHERE id > :last AND path LIKE '/%' "
                                    "ORDER BY id LIMIT :n"), {"last": last, "n": BATCH}).all()
        if not rows:
            return
        changed = [{"i": i, "p": _relative(p)} for i, p in rows if _relative(p) != p]
        if changed:
            bind.execute(sa.text(f"UPDATE {table} SET path = :p WHERE id = :i"), changed)
        last = rows[-1][0]


def upgrade() -> None:
    bind = op.get_bind()
    _rewrite_paths(bind, "models")
    _rewrite_paths(bind, "artifacts")
    value_sql = "CAST(:r AS JSON)" if bind.dialect.name == "postgresql" else ":r"
    for job_id, result in bind.execute(sa.text("SELECT id, result FROM jobs WHERE result IS NOT NULL")).all():
        value = json.loads(result) if isinstance(result, str) else result
        if _relative(value) != value:
            bind.execute(sa.text(f"UPDATE jobs SET result = {value_sql} WHERE id = :i"),
                         {"r": json.dumps(_relative(value)), "i": job_id})


def downgrade() -> None:
    """Not reversed: the absolute paths are not kept, and the home they named may have moved."""
