"""How the CLI prints: tables, CSV or one JSON document; errors in red on stderr with exit code 2."""

from __future__ import annotations

import csv
import io
import json
from typing import Any, NoReturn

import typer

from convlens.worker.kinds.base import table_lines


def error(message: str) -> None:
    typer.secho(f"error: {message}", fg="red", err=True)


def fail(message: str, code: int = 2) -> NoReturn:
    error(message)
    raise typer.Exit(code)


def require_tensorflow() -> None:
    """Workers and in-process runs need TensorFlow, which comes with the [cpu] or [gpu] extra."""
    import importlib.util

    if importlib.util.find_spec("tensorflow") is None:
        fail("TensorFlow is not installed here: pip install 'convlens[cpu]' (or 'convlens[gpu]' on a CUDA machine)")


def ready_database() -> None:
    """The database at the code's revision, in the home this command uses: said when a home found by looking
    (no CONVLENS_HOME) is new, and the dataset folder it was given remembered there."""
    from convlens.db.session import ensure_current
    from convlens.ml.settings import remember_data_dir, settings

    conf = settings()
    new = conf.home is None and conf.database_url is None and not (conf.home_dir / "convlens.db").exists()
    ensure_current()  # a database behind the code: DatabaseBehind, printed as one line by cli.main
    if new:
        typer.echo(f"convlens: a new home at {conf.home_dir} (no .convlens in this folder or its parents; "
                   "CONVLENS_HOME chooses another)", err=True)
    if conf.data_dir is not None and (conf.datasets_dir / "cifar-10-batches-bin").is_dir():
        remember_data_dir(conf.datasets_dir)


def print_table(rows: list[dict[str, Any]], columns: list[str] | None = None, width: int | None = None,
                shorten: tuple[str, ...] = ()) -> None:
    for line in table_lines(rows, columns, width, shorten):
        typer.echo(line)


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def emit(rows: list[dict[str, Any]], as_json: bool, as_csv: bool, columns: list[str]) -> None:
    """Rows as one JSON document, as CSV, or as a table of `columns`."""
    if as_json:
        print_json(rows)
    elif as_csv:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({k: json.dumps(v) if isinstance(v, list | dict) else v for k, v in r.items()} for r in rows)
        typer.echo(buf.getvalue(), nl=False)
    else:
        print_table(rows, columns)
