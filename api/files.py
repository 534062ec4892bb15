"""Serving files named by the database (artifacts, overlays): opened confined to their job's folder, so a file
swapped for a symlink or a hard link since it was written serves nothing else (ml.data.confined)."""

from __future__ import annotations

import os
from pathlib import Path

from fastapi.responses import Response

from convlens.api.auth import problem
from convlens.ml.data.confined import open_confined
from convlens.ml.errors import FileRefused

CHUNK = 1 << 20


def confined_response(path: str | Path, within: str | Path, media_type: str, what: str,
                      headers: dict[str, str] | None = None) -> Response:
    """The file's bytes, or a 404 that says why it cannot be served."""
    try:
        fd = open_confined(path, within)
    except FileRefused as exc:
        raise problem(404, f"{what}: {exc.reason}") from None
    with os.fdopen(fd, "rb") as fh:
        return Response(fh.read(), media_type=media_type, headers=headers)
