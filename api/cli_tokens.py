"""`convlens tokens create|list|revoke`: the API's credentials, managed where the database is (no token needed)."""

from __future__ import annotations

from typing import Annotated

import typer

from convlens.api.cli_jobs import Json
from convlens.api.output import emit, print_json, ready_database
from convlens.api.tokens import create_token, list_tokens, revoke_token

tokens_app = typer.Typer(help="API tokens: read (list and read jobs, results, artifacts), submit (also submit and "
                              "cancel its own jobs), admin (also cancel any job, manage tokens over HTTP).",
                         no_args_is_help=True)


@tokens_app.command("create")
def create(name: str, scope: Annotated[str, typer.Option(help="read | submit | admin")] = "read",
           max_jobs: Annotated[int | None, typer.Option(help="a quota: at most this many of its jobs unfinished "
                                                        "(waiting, queued or running) at once; children do not count")]
           = None,
           as_json: Json = False) -> None:
    """Create a token; it is shown this once (the last line ends with it), only its hash is kept."""
    ready_database()
    new = create_token(name, scope, max_jobs)
    if as_json:
        print_json(new.model_dump(mode="json"))
    else:
        typer.echo(f"token {new.name!r} ({new.scope}) created; it is shown only now. Send it as "
                   "'Authorization: Bearer TOKEN', or open http://HOST:PORT/?token=TOKEN in a browser.")
        typer.echo(f"token: {new.token}")


@tokens_app.command("list")
def list_(as_json: Json = False) -> None:
    """Every token's name, scope and dates (never the secret)."""
    ready_database()
    emit([t.model_dump(mode="json") for t in list_tokens()], as_json, False, ["name", "scope", "max_jobs",
                                                                             "created_at", "revoked_at"])


@tokens_app.command("revoke")
def revoke(name: str, as_json: Json = False) -> None:
    """Revoke a token: the API refuses it (and sessions made from it) from the next request on."""
    ready_database()
    view = revoke_token(name)
    if as_json:
        print_json(view.model_dump(mode="json"))
    else:
        typer.echo(f"token {name!r} revoked at {view.revoked_at}")
