"""`convlens jobs ...` and `convlens results ...`: follow jobs and query what they stored."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from convlens.api import queries
from convlens.api.cli_jobs import LABEL_OPTIONS, Json, Timeout, show_job, wait_for_job
from convlens.api.follow import describe
from convlens.api.job_search import JobSearch, cell, parse_columns
from convlens.api.output import emit, fail, print_json, print_table, ready_database
from convlens.api.schemas import JobView
from convlens.db.models import JOB_STATUSES
from convlens.ml.errors import one_line
from convlens.worker.job_ids import resolve_id
from convlens.worker.kinds import KINDS
from convlens.worker.labels import PriorityName

jobs_app = typer.Typer(help="List, show, wait for and cancel jobs.", no_args_is_help=True)
results_app = typer.Typer(help="Query metrics and predictions.", no_args_is_help=True)
Csv = Annotated[bool, typer.Option("--csv", help="print CSV")]
TABLE_WIDTH = 100  # columns a default table fits in (`--wide` lifts it)


def existing_job(job_id: str) -> JobView:
    """The job an id or a unique prefix of 4+ characters names; unknown or ambiguous: one line, exit 2 (an
    unknown id is a mistake, not an empty result)."""
    return queries.get_job(resolve_id(job_id))


@jobs_app.command("list")
def jobs_list(status: Annotated[str | None, typer.Option(help="|".join(JOB_STATUSES))] = None,
              kind: Annotated[str | None, typer.Option(help="|".join(KINDS))] = None,
              tag: Annotated[list[str] | None, typer.Option("--tag", help="only runs with this tag (repeatable)")
                             ] = None,
              filter_: Annotated[str | None, typer.Option("--filter", help="e.g. \"metrics.accuracy > 0.7 and "
                                                          "params.learning_rate = 0.001\" (= != < <= > >= ~)")] = None,
              sort: Annotated[str | None, typer.Option(help="a key to sort by, -KEY descending (e.g. "
                                                       "-metrics.accuracy)")] = None,
              columns: Annotated[str | None, typer.Option(help="extra columns, e.g. params.learning_rate,"
                                                          "metrics.accuracy")] = None,
              limit: int = 50, json_out: Json = False) -> None:
    """Jobs, newest first (or by --sort), filtered by status, kind, tags and --filter."""
    if status is not None and status not in JOB_STATUSES:
        fail(f"--status {status!r}: one of {', '.join(JOB_STATUSES)}")
    if kind is not None and kind not in KINDS:
        fail(f"--kind {kind!r}: one of {', '.join(KINDS)}")
    search = JobSearch.parse(filter_, sort, tag)
    extra = parse_columns(columns)
    ready_database()
    jobs = queries.list_jobs(status, kind, limit=limit, search=search)
    if json_out:
        print_json([j.model_dump(mode="json") for j in jobs])
        return
    base = ["id", "name", "kind", "status"]
    shown = list(dict.fromkeys([*base, *map(str, extra)])) if extra else [*base, "progress", "tags", "created_at"]
    print_table([{"id": j.id[:8], "name": j.name, "kind": j.kind, "status": j.status, "tags": " ".join(j.tags),
                  "progress": describe(j.progress.model_dump() if j.progress else None),
                  "created_at": f"{j.created_at:%Y-%m-%d %H:%M}" if j.created_at else None,
                  **{str(k): cell(j, k) for k in extra}} for j in jobs], shown)


@jobs_app.command("edit")
def jobs_edit(job_id: str,
              name: Annotated[str | None, typer.Option(help="a new name (\"\" clears it)")] = None,
              add_tag: Annotated[list[str] | None, typer.Option("--add-tag", help="repeatable")] = None,
              remove_tag: Annotated[list[str] | None, typer.Option("--remove-tag", help="repeatable")] = None,
              note: Annotated[str | None, typer.Option(help="a new note (\"\" clears it)")] = None,
              priority: Annotated[PriorityName | None, typer.Option(help="low | normal | high: its place within "
                                                                   "its owner's share")] = None,
              json_out: Json = False) -> None:
    """Rename, tag, untag, annotate or reprioritise a job."""
    from pydantic import ValidationError

    from convlens.worker.labels import LabelEdit, edit_labels

    try:
        edit = LabelEdit(name=name, note=note, add_tags=add_tag or [], remove_tags=remove_tag or [],
                         priority=priority)
    except ValidationError as exc:
        fail(one_line(exc, LABEL_OPTIONS))
    ready_database()
    job = existing_job(job_id)
    edit_labels(job.id, edit)
    edited = queries.get_job(job.id)
    if json_out:
        print_json(edited.model_dump(mode="json"))
    else:
        typer.echo(f"job {job.id}: name {edited.name or '-'}, tags {' '.join(edited.tags) or '-'}, priority "
                   f"{edited.priority}" + (f", note {edited.note!r}" if edited.note else ""))


@jobs_app.command("show")
def jobs_show(job_id: str, json_out: Json = False) -> None:
    ready_database()
    job = existing_job(job_id)
    if json_out:
        print_json(job.model_dump(mode="json"))
    else:
        show_job(job)


@jobs_app.command("wait")
def jobs_wait(job_id: str, json_out: Json = False, timeout: Timeout = None) -> None:
    """Progress bar until the job ends; exit code 1 unless it succeeded, 3 after --timeout."""
    ready_database()
    wait_for_job(existing_job(job_id).id, json_out, timeout)


@jobs_app.command("cancel")
def jobs_cancel(job_id: str, json_out: Json = False) -> None:
    ready_database()
    from convlens.worker.tasks import cancel

    job_id = existing_job(job_id).id
    ids = cancel(job_id)
    if json_out:
        print_json({"cancelled": ids})
    else:
        typer.echo(f"cancelled {job_id} ({len(ids) - 1} child jobs)")


@results_app.command("metrics")
def results_metrics(job_id: str, json_out: Json = False, csv_out: Csv = False) -> None:
    ready_database()
    job_id = existing_job(job_id).id
    rows = [m.model_dump(mode="json", by_alias=True) for m in queries.metrics(job_id)]
    emit(rows, json_out, csv_out, ["split", "fold", "class", "name", "value"])


HISTORY_COLUMNS = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "images_per_s"]


@results_app.command("history")
def results_history(job_id: str, json_out: Json = False, csv_out: Csv = False) -> None:
    """The epochs a training job has finished so far, with their figures (while it runs too)."""
    ready_database()
    job = existing_job(job_id)
    emit([{**e, "epoch": int(e["epoch"])} for e in job.history or []], json_out, csv_out, HISTORY_COLUMNS)


@results_app.command("trials")
def results_trials(sweep_id: str, json_out: Json = False, csv_out: Csv = False) -> None:
    """A sweep's trials (so far, while it runs): state, value, epochs, the options tried, worker, job."""
    from convlens.worker.kinds.sweep import trials_table
    from convlens.worker.sweeps import sweep_view

    ready_database()
    view = sweep_view(existing_job(sweep_id).id)
    if json_out:
        print_json(view.model_dump(mode="json"))
        return
    rows = trials_table(view)
    emit(rows, False, csv_out, list(rows[0]) if rows else ["trial"])
    if not csv_out and view.best:
        typer.echo(f"best: trial {view.best.number}, {view.metric} {view.best.value:.4f}, model {view.best.job_id}")


PREDICTION_COLUMNS = ["path", "predicted", "confidence", "decision", "true_label", "set_size", "error"]


@results_app.command("predictions")
def results_predictions(
    job_id: str,
    label: Annotated[str | None, typer.Option(help="only this predicted class")] = None,
    true_label: Annotated[str | None, typer.Option(help="only this true class (the image's folder name)")] = None,
    min_confidence: Annotated[float | None, typer.Option(help="only confidence >= P")] = None,
    misclassified: Annotated[bool, typer.Option(help="only files whose folder names another class")] = False,
    uncertain: Annotated[bool, typer.Option(help="only rows decided uncertain (threshold or conformal)")] = False,
    errors: Annotated[bool, typer.Option("--errors", help="only unreadable files")] = False,
    set_size: Annotated[int | None, typer.Option(help="only conformal sets of exactly N classes (0: empty)")] = None,
    min_set_size: Annotated[int | None, typer.Option(help="only conformal sets of N classes or more")] = None,
    limit: Annotated[int | None, typer.Option(help="at most N rows")] = None,
    wide: Annotated[bool, typer.Option("--wide", help="whole paths, the prediction sets, top-k and overlays")] = False,
    json_out: Json = False,
    csv_out: Csv = False,
    parquet: Annotated[Path | None, typer.Option(help="write every selected row to this Parquet file instead")] = None,
) -> None:
    ready_database()
    from pydantic import ValidationError

    from convlens.api.predictions_csv import csv_text, record
    from convlens.api.schemas import PredictionFilter

    job_id = existing_job(job_id).id  # as over HTTP: an unknown job is the first thing said
    try:
        filters = PredictionFilter(label=label, true_label=true_label, min_confidence=min_confidence,
                                   misclassified=misclassified, uncertain=uncertain, errors=True if errors else None,
                                   set_size=set_size, min_set_size=min_set_size)
    except ValidationError as exc:
        fail(one_line(exc, options={}))
    if parquet is not None:  # every row, a page at a time (no --limit)
        from convlens.api.predictions_parquet import write_parquet

        typer.echo(f"{write_parquet(job_id, filters, parquet)} rows written to {parquet}")
        return
    rows = queries.predictions(job_id, filters, limit)
    if json_out:
        print_json([r.model_dump(mode="json") for r in rows])
    elif csv_out:
        typer.echo(csv_text(rows), nl=False)
    elif wide:
        print_table([record(r) for r in rows], [*PREDICTION_COLUMNS, "prediction_set", "top_k", "overlay"])
    else:
        print_table([record(r) for r in rows], PREDICTION_COLUMNS, width=TABLE_WIDTH, shorten=("path", "error"))
