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


class WaitTimeout(Exception):
    pass


def queue_consumers(queue: str) -> list[str]:
    """The live workers that consume `queue` (asked over the broker; none answer within a second: none)."""
    from convlens.worker.app import app

    replies = app.control.inspect(timeout=1.0).active_queues() or {}
    return sorted(w for w, queues in replies.items() if any(q.get("name") == queue for q in queues))


def follow(job_id: str, stop: threading.Event | None = None, interval: float = 1.0, quiet: bool = False,
           timeout: float | None = None, queues: tuple[str, ...] = (), warn_after: float = 20.0) -> dict:
    """Polls the job until it finishes (or `stop` is set), drawing a progress bar; returns the final job.

    With `queues` (every queue the job's work goes through), checks every `warn_after` seconds while the job
    or one of its parts waits in a queue, and warns on stderr when a queue it needs has no live consumer (again
    whenever that set of queues changes: a worker started for one queue leaves a part waiting on another).
    Raises WaitTimeout after `timeout` seconds.
    """
    last_line, started = "", time.monotonic()
    next_check, warned_for = started + warn_after, frozenset()
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
            waited = time.monotonic() - started
            stuck = job["status"] in ("queued", "running") and (job["status"] == "queued" or any(
                c["status"] == "queued" for c in job.get("children") or []))
            if queues and stuck and time.monotonic() >= next_check:
                next_check = time.monotonic() + warn_after
                missing = frozenset(q for q in queues if not queue_consumers(q))
                if missing and missing != warned_for:
                    typer.secho(f"\nwarning: job {job_id} (or a part of it) is still queued and no live worker "
                                f"consumes queue {', '.join(sorted(missing))} (it needs {', '.join(queues)}): "
                                "`convlens worker` serves them all", fg="yellow", err=True)
                warned_for = missing
            if timeout is not None and waited > timeout:
                raise WaitTimeout(f"job {job_id} still {job['status']} after {timeout:g} s")
            if stop is not None:
                stop.wait(interval)
            else:
                time.sleep(interval)


def follow_in_background(job_id: str, quiet: bool) -> tuple[threading.Thread, threading.Event]:
    """For `convlens run`: draws progress while this process does the work."""
    stop = threading.Event()
    thread = threading.Thread(target=follow, args=(job_id, stop, 1.0, quiet), daemon=True)
    thread.start()
    return thread, stop
