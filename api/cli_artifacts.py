"""`convlens artifacts migrate|get`: the artifact store that makes outputs readable on every machine."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

import typer
from pydantic import BaseModel

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


class Copied(BaseModel):
    key: str
    path: str
    files: int


@artifacts_app.command("get")
def get(key: Annotated[str, typer.Argument(help="runs/JOB_ID/... (a file or a folder), as results and jobs show it")],
        to: Annotated[Path, typer.Option("--to", help="folder to copy it into")] = Path("."),
        as_json: Json = False) -> None:
    """Copy a job's output (a model, a plot, a folder of overlays) from the artifact store to this machine."""
    from convlens.worker.artifacts import ArtifactMissing, artifact_store
    from convlens.worker.paths import run_key

    ready_database()
    named, key = key, run_key(key)  # also a path under another machine's home, as its jobs show them
    if key is None:
        fail(f"{named}: not a job's output; name one as runs/JOB_ID/... (as `convlens results` shows it)")
    store, target = artifact_store(), to / Path(key).name
    try:
        source = store.fetch(key)
    except ArtifactMissing:
        try:
            source = store.fetch_folder(key)
        except ArtifactMissing:
            fail(f"{key}: no file or folder of that name in the artifact store ({store.name})")
    try:
        to.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            shutil.copyfile(source, target)
    except OSError as e:
        fail(f"{target}: cannot write there ({e.strerror or e})")
    done = Copied(key=key, path=str(target),
                  files=sum(1 for p in target.rglob("*") if p.is_file()) if target.is_dir() else 1)
    if as_json:
        print_json(done.model_dump())
    else:
        typer.echo(f"{key}: {done.files} file{'s' if done.files != 1 else ''} copied to {target}")
