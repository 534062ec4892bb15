"""Short job ids: the first 4 or more hex digits of a job's id, as the CLI prints them, name that job wherever an
id is taken (the CLI, HTTP paths, --model, SWEEP:best, --after)."""

from __future__ import annotations

import re

from sqlalchemy import select

from convlens.db.models import Job
from convlens.db.session import session_scope
from convlens.worker.errors import AmbiguousId, JobNotFound

SHORT_ID = re.compile(r"[0-9a-f]{4,32}")


def resolve_id(text: str) -> str:
    """The full id of the one job whose id starts with `text` (4 to 32 hex digits).

    Raises JobNotFound for none, AmbiguousId (listing them) for several.
    """
    if not SHORT_ID.fullmatch(text):
        raise JobNotFound(f"job {text} not found (an id, or its first 4 or more characters: `convlens jobs list`)")
    with session_scope() as s:
        found = s.scalars(select(Job.id).where(Job.id.startswith(text, autoescape=True)).order_by(Job.id)
                          .limit(6)).all()
    if not found:
        raise JobNotFound(f"job {text} not found (`convlens jobs list` shows the ids)")
    if len(found) > 1:
        more = ", ..." if len(found) > 5 else ""
        raise AmbiguousId(f"{text} is the start of {'more than 5' if more else len(found)} job ids "
                          f"({', '.join(found[:5])}{more}): give more characters")
    return found[0]


def expand(text: str) -> str:
    """`text` as a full job id when it is the unique start of one, else as it is (the caller says what is
    wrong with it); AmbiguousId when several jobs' ids start with it."""
    if len(text) == 32 or not SHORT_ID.fullmatch(text):
        return text
    try:
        return resolve_id(text)
    except JobNotFound:
        return text
