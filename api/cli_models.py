"""`convlens models list|show|alias|delete`: the model registry (every train job's model as NAME:VERSION)."""

from __future__ import annotations

from typing import Annotated

import typer

from convlens.api.cli_jobs import Json
from convlens.api.output import emit, print_json, ready_database
from convlens.worker import registry

models_app = typer.Typer(help="The model registry: every train job's model as NAME:VERSION (NAME from --name, "
                              "else the preset), aliases such as NAME@champion; --model takes any of them.",
                         no_args_is_help=True)
COLUMNS = ["ref", "aliases", "preset", "accuracy", "macro_f1", "ece", "temperature", "job_id", "present"]


@models_app.command("list")
def list_(name: Annotated[str | None, typer.Argument(help="only this name's versions")] = None,
          as_json: Json = False) -> None:
    """Every registered model, newest version of each name first, with its test figures."""
    ready_database()
    views = registry.list_models(name)
    if as_json:
        print_json([v.model_dump(mode="json") for v in views])
        return
    emit([{**v.model_dump(), "aliases": ",".join(v.aliases) or None, "job_id": v.job_id[:8]} for v in views],
         False, False, COLUMNS)


@models_app.command("show")
def show(ref: Annotated[str, typer.Argument(help=registry.REF_HELP)], as_json: Json = False) -> None:
    """One model: what it takes, its classes, calibration and figures, the job that made it."""
    ready_database()
    v = registry.show(ref)
    if as_json:
        print_json(v.model_dump(mode="json"))
        return
    for key, value in v.model_dump().items():
        typer.echo(f"{key:16} {', '.join(map(str, value)) if isinstance(value, list) else value}")


@models_app.command("alias")
def alias(ref: str, name: Annotated[str, typer.Argument(help="e.g. champion: then --model NAME@champion")]) -> None:
    """Point NAME@ALIAS at this model (moving the alias from another version)."""
    ready_database()
    v = registry.set_alias(ref, name)
    typer.echo(f"{v.name}@{name} -> {v.ref}")


@models_app.command("delete")
def delete(ref: str) -> None:
    """Remove a version from the registry (its aliases too); its train job and file stay."""
    ready_database()
    typer.echo(f"deleted {registry.delete_model(ref)} from the registry")
