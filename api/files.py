"""Serving files named by the database (artifacts, overlays): a file under this home is opened confined to its
job's folder, so a file swapped for a symlink or a hard link since it was written serves nothing else
(ml.data.confined); one another machine wrote is streamed from the artifact store."""

from __future__ import annotations

import os
from pathlib import Path

from fastapi.responses import Response, StreamingResponse

from convlens.api.auth import problem
from convlens.ml.data.confined import open_confined
from convlens.ml.errors import FileRefused
from convlens.ml.settings import settings
from convlens.worker.artifacts import ArtifactMissing, artifact_store
from convlens.worker.paths import local, stored

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


def artifact_response(path: str | Path, job_id: str, media_type: str, what: str,
                      headers: dict[str, str] | None = None) -> Response:
    """A job's output file: from this home when it is here (or the store is `home`), else from the store."""
    key, store = stored(path), artifact_store()
    if store.name == "home" or local(key).exists():
        return confined_response(local(key), settings().home_dir / "runs" / job_id, media_type, what, headers)
    try:
        chunks = store.chunks(key)
    except ArtifactMissing:
        raise problem(404, f"{what}: not in the artifact store") from None
    return StreamingResponse(chunks, media_type=media_type, headers=headers)
