"""The `convlens` command line: run or submit jobs, follow them, query results, start workers and the API."""

from __future__ import annotations

import sys

import typer

from convlens.api.cli_jobs import run_app, submit_app
from convlens.api.cli_query import jobs_app, results_app
from convlens.api.cli_services import db_app, embedded_app, services_app

app = typer.Typer(help="convlens: train, evaluate, explain and apply CNN image classifiers as batch jobs.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
for sub, name in ((run_app, "run"), (submit_app, "submit"), (jobs_app, "jobs"), (results_app, "results"),
                  (db_app, "db"), (embedded_app, "services")):
    app.add_typer(sub, name=name)
app.registered_commands += services_app.registered_commands


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
