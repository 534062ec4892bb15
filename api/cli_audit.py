"""`convlens audit`: who changed what, read where the database is (no token needed)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from convlens.api.cli_jobs import Json
from convlens.api.output import emit, ready_database
from convlens.worker.audit import Action, events

COLUMNS = ["id", "at", "actor", "action", "target", "address", "detail"]


def audit(actor: Annotated[str | None, typer.Option(help="only this token's changes")] = None,
          action: Annotated[Action | None, typer.Option(help="only this kind of change")] = None,
          since: Annotated[datetime | None, typer.Option(help="from this time (UTC)")] = None,
          before: Annotated[int | None, typer.Option(help="only events older than this id (the next page)")] = None,
          limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
          json_out: Json = False) -> None:
    """Who submitted, cancelled or edited jobs, made or revoked tokens, moved aliases, imported or exported
    models: newest first (the local CLI's own changes show actor -)."""
    ready_database()
    rows = [r.model_dump(mode="json") for r in events(actor, action, since, None, before, limit)]
    emit(rows, json_out, False, COLUMNS)
