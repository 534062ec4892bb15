"""The audit log: who changed what, when, from where, appended in the results database.

Each change records itself where it is made (submit, cancel, edit, token creation and revocation, alias moves,
imports, exports), whichever edge asked for it: the edge says who is asking once, in `acting_as` (the HTTP API per
request, with the token's name and the client's address; the local CLI is the default, actor None). Rows are only
ever inserted: nothing in convlens updates or deletes them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from convlens.db.models import AuditEvent
from convlens.db.session import session_scope


class Action(StrEnum):
    SUBMIT = "submit"
    CANCEL = "cancel"
    EDIT = "edit"
    TOKEN_CREATE = "token.create"
    TOKEN_REVOKE = "token.revoke"
    ALIAS = "model.alias"
    IMPORT = "model.import"
    EXPORT = "model.export"


@dataclass
class Actor:
    """Who is asking: a token's name (None: the local CLI) and the client's address. Mutable: the HTTP API makes
    one per request before it knows the token, and authentication fills in the name."""

    name: str | None = None
    address: str | None = None


_actor: ContextVar[Actor | None] = ContextVar("convlens_actor", default=None)


def current_actor() -> Actor:
    return _actor.get() or Actor()


@contextmanager
def acting_as(actor: Actor) -> Iterator[Actor]:
    token = _actor.set(actor)
    try:
        yield actor
    finally:
        _actor.reset(token)


def record(action: Action, target: str | None, session: Session | None = None, **detail: Any) -> None:
    """Appends one event (in `session`'s transaction when given, so it commits with the change it records)."""
    who = current_actor()
    event = AuditEvent(actor=who.name, address=who.address, action=action, target=target,
                       detail={k: v for k, v in detail.items() if v is not None} or None)
    if session is not None:
        session.add(event)
        return
    with session_scope() as s:
        s.add(event)


class AuditRow(BaseModel):
    id: int = Field(description="increasing: pass the last one seen as `before` for the next page")
    at: datetime
    actor: str | None = Field(description="the token's name (None: the local CLI)")
    action: Action
    target: str | None
    detail: dict[str, Any] | None = None
    address: str | None = Field(description="the client's address (None: the local CLI)")


def events(actor: str | None = None, action: Action | None = None, since: datetime | None = None,
           until: datetime | None = None, before: int | None = None, limit: int = 100) -> list[AuditRow]:
    """Newest first, one keyset page: the rows with ids below `before`."""
    q = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if actor is not None:
        q = q.where(AuditEvent.actor == actor)
    if action is not None:
        q = q.where(AuditEvent.action == action)
    if since is not None:
        q = q.where(AuditEvent.at >= since)
    if until is not None:
        q = q.where(AuditEvent.at < until)
    if before is not None:
        q = q.where(AuditEvent.id < before)
    with session_scope() as s:
        return [AuditRow.model_validate(e, from_attributes=True) for e in s.scalars(q)]
