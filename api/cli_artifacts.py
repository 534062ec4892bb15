"""`convlens artifacts migrate`: the artifact store that makes outputs readable on every machine."""

from __future__ import annotations

from typing import Annotated

import typer

from convlens.api.cli_jobs import Json
from convlens.api.output import fail, print_json, ready_database

artifacts_app = typer.Typer(help="The artifact store (CONVLENS_ARTIFACT_STORE: home, database or s3://...): "
                                 "where models, plots and overlays are kept for every machine.",
                            no_args_is_help=True)


@artifacts_app.command("migrate")
def migrate(to: Annotated[str, typer.Option("--to", help="database, or an fsspec URL such as s3://bucket/prefix")],
            as_json: Json = False) -> None:
    """Copy every output under this CONVLENS_HOME into a store and check each copy; then set
    CONVLENS_ARTIFACT_STORE to it on every machine."""
    from rich.progress import Progress

    from convlens.worker.artifacts import migrate as copy_all

    ready_database()
    with Progress(transient=True, disable=as_json) as bar:
        task = bar.add_task("copying", total=None)
        done = copy_all(to, lambda n, total: bar.update(task, completed=n, total=total))
    if as_json:
        print_json(done.model_dump())
    else:
        typer.echo(f"{done.files} files of {done.jobs} jobs ({done.bytes / 2**20:.1f} MiB) copied to {done.store}; "
                   f"{done.verified} read back equal" + (f"; {done.skipped} files of jobs this database does not "
                                                         "know left alone" if done.skipped else ""))
        if done.verified == done.files:
            typer.echo(f"now set CONVLENS_ARTIFACT_STORE={to} for every worker and API process")
    if done.verified != done.files:
        fail(f"{done.files - done.verified} files did not read back equal: keep CONVLENS_ARTIFACT_STORE as it is")
