"""`convlens queues`: what waits in the broker's queues, and emptying them."""

from __future__ import annotations

from typing import Annotated

import typer

from convlens.api.output import emit, fail, ready_database
from convlens.worker.queues import QUEUES, QueueName

queues_app = typer.Typer(help="The broker's queues (Redis or RabbitMQ, through one adapter).", no_args_is_help=True)


@queues_app.command("list")
def list_queues(json_out: Annotated[bool, typer.Option("--json", help="print one JSON document")] = False) -> None:
    """Messages waiting in each queue, beside the units queued in the database."""
    from convlens.api import queries
    from convlens.worker.monitor import queue_depths

    ready_database()
    depths = queue_depths()
    if depths.unreachable:
        fail(depths.unreachable)
    emit([{"queue": q, "messages": n} for q, n in depths.counts.items()], json_out, False, ["queue", "messages"])
    if not json_out:
        typer.echo(f"queued jobs and parts in the database: {queries.count_jobs('queued', top_level=False)}")


@queues_app.command("purge")
def purge(queue: Annotated[list[QueueName] | None, typer.Option(help="only this queue (repeatable)")] = None,
          yes: Annotated[bool, typer.Option("--yes", help="do it (without, nothing is dropped)")] = False) -> None:
    """Drop every waiting message. Jobs stay: each queued one is sent again by the workers' recovery once it is
    stale (CONVLENS_STALE_AFTER_S), so this clears spare and foreign messages, never a user's work."""
    from convlens.worker.broker import ensure_embedded_redis
    from convlens.worker.transport import transport

    ready_database()
    if not yes:
        fail("this drops every message waiting in the queues: add --yes to do it")
    ensure_embedded_redis()
    names = tuple(queue or QUEUES)
    typer.echo(f"dropped {transport().purge(names)} messages from {', '.join(names)}")
