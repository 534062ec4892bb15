"""The `convlens` command line: run or submit jobs, follow them, query results, start workers and the API."""

from __future__ import annotations

import os
import sys
from typing import NoReturn

import typer

from convlens.api.cli_artifacts import artifacts_app
from convlens.api.cli_audit import audit
from convlens.api.cli_jobs import run_app, submit_app
from convlens.api.cli_models import models_app
from convlens.api.cli_query import jobs_app, results_app
from convlens.api.cli_queues import queues_app
from convlens.api.cli_services import db_app, embedded_app, services_app
from convlens.api.cli_tokens import tokens_app
from convlens.api.output import error

app = typer.Typer(help="convlens: train, evaluate, explain and apply CNN image classifiers as batch jobs.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
for sub, name in ((run_app, "run"), (submit_app, "submit"), (jobs_app, "jobs"), (results_app, "results"),
                  (db_app, "db"), (embedded_app, "services"), (tokens_app, "tokens"), (models_app, "models"),
                  (artifacts_app, "artifacts"), (queues_app, "queues")):
    app.add_typer(sub, name=name)
app.registered_commands += services_app.registered_commands
app.command("audit")(audit)


def main() -> None:
    from sqlalchemy.exc import OperationalError

    from convlens.ml.errors import ConvlensError

    # Whatever convlens writes (the database, the broker's files, models, overlays) is its user's alone.
    os.umask(0o077)
    try:
        app()
    except KeyboardInterrupt:  # a job followed by --wait or `jobs wait` goes on: say so
        sys.stderr.write("\ninterrupted: nothing was cancelled (a submitted job goes on; `convlens jobs cancel ID` "
                         "stops it)\n")
        sys.exit(130)
    except OSError as exc:  # a read-only or full CONVLENS_HOME, a missing folder: the OS's reason, no traceback
        _exit_with(f"cannot use {exc.filename}: {exc.strerror}" if exc.filename else str(exc))
    except OperationalError as exc:
        _exit_with(f"the database cannot be used: {exc.orig}")
    except ConvlensError as exc:  # every error a user can act on, from any layer, translated here once
        _exit_with(str(exc))


def _exit_with(message: str) -> NoReturn:
    error(message)  # outside the app, where typer.Exit would not be caught
    sys.exit(2)


if __name__ == "__main__":
    main()
