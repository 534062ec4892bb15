"""Following a job from the database: a progress bar on stderr until it ends."""

from __future__ import annotations

import sys
import threading
import time

import typer

from convlens.api import queries
from convlens.db.models import FINISHED


def describe(progress: dict | None) -> str:
    if not progress:
        return ""
    p = progress
    if p.get("epoch") is not None:
        m = p.get("metrics") or {}
        extra = " ".join(f"{k}={v:.3f}" for k, v in m.items() if k in ("loss", "accuracy", "val_accuracy"))
        done = f" ({p['fraction']:.0%})" if p.get("fraction") is not None else ""
        return f"epoch {p['epoch']}/{p.get('epochs', '?')} step {p.get('step', 0)}/{p.get('steps', '?')}{done} {extra}"
    if p.get("done") is not None:
        return f"{p.get('stage', '')} {p['done']}/{p.get('total', '?')}"
    return str(p.get("stage", ""))


def follow(job_id: str, stop: threading.Event | None = None, interval: float = 1.0, quiet: bool = False) -> dict:
    """Polls the job until it finishes (or `stop` is set), drawing a progress bar; returns the final job."""
    last_line = ""
    with typer.progressbar(length=1000, label=f"job {job_id[:8]}", file=sys.stderr,
                           hidden=quiet) as bar:
        shown = 0
        while True:
            view = queries.get_job(job_id)
            if view is None:
                raise typer.BadParameter(f"job {job_id} not found")
            job = view.model_dump(mode="json")
            fraction = (job.get("progress") or {}).get("fraction") or 0.0
            target = int(1000 * (1.0 if job["status"] in FINISHED else fraction))
            if target > shown:
                bar.update(target - shown)
                shown = target
            line = describe(job.get("progress"))
            if line and line != last_line and not quiet:
                bar.label = f"job {job_id[:8]} {job['status']} {line}"
                last_line = line
            if job["status"] in FINISHED or (stop is not None and stop.is_set()):
                return job
            time.sleep(interval)


def follow_in_background(job_id: str, quiet: bool) -> tuple[threading.Thread, threading.Event]:
    """For `convlens run`: draws progress while this process does the work."""
    stop = threading.Event()
    thread = threading.Thread(target=follow, args=(job_id, stop, 1.0, quiet), daemon=True)
    thread.start()
    return thread, stop
