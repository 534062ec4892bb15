"""/audit: an admin reads who changed what (worker.audit), newest first, a keyset page at a time."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from convlens.api.auth import Admin
from convlens.api.deps import ERRORS, QueryText
from convlens.worker.audit import Action, AuditRow, events

router = APIRouter(tags=["audit"])


class AuditPage(BaseModel):
    events: list[AuditRow]
    next_before: int | None = Field(None, description="pass as `before` for the next (older) page; None: no more")


@router.get("/audit", response_model=AuditPage, responses=ERRORS)
def get_audit(_: Admin, actor: QueryText | None = None, action: Action | None = None,
              since: datetime | None = None, until: datetime | None = None,
              before: Annotated[int | None, Query(ge=1, description="events older than this id")] = None,
              limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> AuditPage:
    """Every submit, cancel, edit, token creation and revocation, alias move, import and export: who (the token's
    name; null: the server's own CLI), what, when, from which address."""
    rows = events(actor, action, since, until, before, limit)
    return AuditPage(events=rows, next_before=rows[-1].id if len(rows) == limit else None)
