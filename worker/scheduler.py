"""Fair share: which queued unit of work a free worker slot runs next.

A message on a queue is a ticket for one unit of work on that queue (a job, a composite's child, a part of a
fan-out), not for the unit it was sent with: the worker that takes it runs the unit fair share picks among those
queued on that queue. Owners (the API token that submitted the work; the local CLI is one owner) take turns: the
owner with the fewest units running now goes first, then the one whose last unit started longest ago (Slurm's
fair-share factor reduced to what is running and what ran last, so a burst of shards cannot starve a later
single job); within an owner, higher priority first, then the oldest. A running unit is never interrupted.

Why nothing is left behind: every unit is sent at least once, a message claims at most one unit, and a message
is spent without claiming one only when nothing on its queue is queued any more, so there are always at least as
many messages as queued units (recovery sends more where it finds fewer). The broker only counts tickets, so Redis
and RabbitMQ behave alike. Broker priorities could not do this: RabbitMQ's quorum queues have none before 4.0,
and a priority fixed at send time cannot let a job submitted later pass shards queued earlier by another owner.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, or_, select

from convlens.db.models import Job, JobStatus
from convlens.db.session import session_scope
from convlens.ml.settings import settings
from convlens.worker.kinds import KINDS

CANDIDATES = 500  # queued units read per choice, oldest first: enough to see every owner that waits
_NEVER = datetime.min.replace(tzinfo=UTC)


def _aware(at: datetime | str | None) -> datetime | None:
    """max() of a timestamp column comes back naive (or as text) from SQLite."""
    if isinstance(at, str):
        at = datetime.fromisoformat(at)
    return at.replace(tzinfo=UTC) if at is not None and at.tzinfo is None else at


def parent_kinds() -> list[str]:
    """Kinds whose rows stay running while their parts or children do the work (they occupy no slot)."""
    return [k.name for k in KINDS.values() if k.fans_out or k.composite]


def choices(offered: str) -> list[str]:
    """The units the slot that took `offered`'s message should try to claim, best first. `offered` comes first
    when it is not queued (a redelivery resumes it after a crash), then the queued ones: a message whose own unit
    has ended or runs elsewhere is still a ticket for another. Only `offered` for a row from before fair share."""
    if not settings().fair_share:
        return [offered]
    with session_scope() as s:
        row = s.execute(select(Job.status, Job.queue).where(Job.id == offered)).one_or_none()
        if row is None or row.queue is None:
            return [offered]
        queued = s.execute(select(Job.id, Job.submitted_by, Job.priority, Job.created_at, Job.part)
                           .where(Job.status == JobStatus.QUEUED, Job.queue == row.queue)
                           .order_by(Job.created_at, Job.part).limit(CANDIDATES)).all()
        owners = {u.submitted_by for u in queued}
        mine = or_(Job.submitted_by.in_(owners - {None}), *([Job.submitted_by.is_(None)] if None in owners else []))
        working = (Job.kind.not_in(parent_kinds()), mine)
        running = dict(s.execute(select(Job.submitted_by, func.count()).where(Job.status == JobStatus.RUNNING,
                                                                             *working)
                                 .group_by(Job.submitted_by)).all())
        last = {owner: _aware(at) for owner, at in s.execute(
            select(Job.submitted_by, func.max(Job.started_at)).where(*working).group_by(Job.submitted_by)).all()}

    def turn(unit) -> tuple:  # noqa: ANN001
        return (running.get(unit.submitted_by, 0), last.get(unit.submitted_by) or _NEVER, -unit.priority,
                unit.created_at, unit.part or 0)

    ranked = [u.id for u in sorted(queued, key=turn)]
    return ranked if row.status == JobStatus.QUEUED and offered in ranked else [offered, *ranked]
