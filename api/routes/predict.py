"""POST /predict: uploaded images classified in the request (no job row): the model's temperature-scaled
probabilities, its decision, the conformal set and, on request, a Grad-CAM overlay, by the same code a
classify job runs (ml.classify.classify_files over the uploads written to a private temporary folder)."""

from __future__ import annotations

import asyncio
import base64
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile

from convlens.api.auth import Submitter, problem
from convlens.api.deps import BODY_ERRORS, MAX_FILE_BYTES, MAX_FILES, MAX_REQUEST_BYTES, QueryText, error_doc
from convlens.ml.feasible import feature_map_problem
from convlens.ml.keras_file import read_config
from convlens.worker import registry
from convlens.worker.artifacts import ModelFile
from convlens.worker.paths import JOB_ID

router = APIRouter(tags=["predict"])
# Requests classified at once in this process, and how many may wait their turn (more are answered 429): each
# may decode images of up to 64 megapixels and draw their Grad-CAM overlays, hundreds of MB apiece, so running
# them one at a time bounds the API's memory by one request's, not by how many strangers send at once.
AT_ONCE = 1
MAX_WAITING = 8


class Gate:
    """A turn to classify in this process (an asyncio semaphore with a bounded queue)."""

    def __init__(self) -> None:
        self.turns = asyncio.Semaphore(AT_ONCE)
        self.waiting = 0

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        if self.waiting >= MAX_WAITING:
            raise problem(429, f"{MAX_WAITING} predictions are waiting their turn on this API host: try again "
                               "shortly, or classify many images with a classify job", headers={"Retry-After": "5"})
        self.waiting += 1
        try:
            await self.turns.acquire()
        finally:
            self.waiting -= 1
        try:
            yield
        finally:
            self.turns.release()


gate = Gate()


class UploadPrediction(BaseModel):
    file: str = Field(description="the upload's file name")
    predicted: str | None = None
    confidence: float | None = Field(None, description="temperature-scaled probability of the predicted class")
    top_k: list[tuple[str, float]] = []
    decision: str | None = Field(None, description="the class, or `uncertain` (per-class thresholds)")
    prediction_set: list[str] | None = Field(None, description="conformal set at 1 - alpha (a calibrated model)")
    overlay_png: str | None = Field(None, description="with gradcam=true: the Grad-CAM overlay, base64 PNG")
    error: str | None = Field(None, description="why this file could not be classified")


class PredictResponse(BaseModel):
    model: str = Field(description="the model used: NAME:VERSION, or the .keras file")
    predictions: list[UploadPrediction]


@router.post("/predict", response_model=PredictResponse, responses={
    **BODY_ERRORS, 404: error_doc("no such model"), 411: error_doc("no Content-Length"),
    429: error_doc(f"{MAX_WAITING} predictions already waiting on this host (Retry-After)"),
    413: error_doc(f"over {MAX_REQUEST_BYTES >> 20} MiB in all, {MAX_FILE_BYTES >> 20} MiB a file or {MAX_FILES} "
                   "files"),
    503: error_doc("this API host has no TensorFlow")})
async def predict(request: Request, _: Submitter, model: QueryText, gradcam: bool = False,
                  top_k: int = Query(3, ge=1, le=100),
                  alpha: float = Query(0.1, ge=0.001, le=0.5)) -> PredictResponse:
    """Classify one or more images sent as multipart fields named `file` (PNG, JPEG, ...: read by content,
    whatever their names say)."""
    ref = registry.resolve_ref(model)  # an unknown model is said before the upload is read
    label = registry.show(ref).ref if JOB_ID.fullmatch(ref) else ref
    form = await request.form(max_files=MAX_FILES, max_fields=8)
    files = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
    if not files:
        raise problem(422, "no image: send each as a multipart field named `file`")
    uploads = []
    for f in files:
        data = await f.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise problem(413, f"{f.filename}: over the limit of {MAX_FILE_BYTES:,} bytes a file")
        uploads.append((f.filename or "upload", data))
    model_file = registry.model_file(ref, strict_paths=True)
    if gradcam and (why := feature_map_problem(read_config(model_file.path))):
        raise problem(422, f"gradcam: {why}", [{"field": "gradcam", "message": why}])
    try:
        async with gate.turn():
            predictions = await run_in_threadpool(_classify, model_file, uploads, gradcam, top_k, alpha)
    except ImportError:
        raise problem(503, "this API host has no TensorFlow: install convlens[cpu] (or [gpu]) on it to predict") \
            from None
    if all(p.error for p in predictions):
        raise problem(422, "; ".join(f"{p.file}: {p.error}" for p in predictions))
    return PredictResponse(model=label, predictions=predictions)


def _classify(model_file: ModelFile, uploads: list[tuple[str, bytes]], gradcam: bool, top_k: int,
              alpha: float) -> list[UploadPrediction]:
    from convlens.ml.classify import SetOptions, classify_files
    from convlens.ml.saved import load_trained_cached

    # Kept loaded between requests while the file is unchanged.
    trained = load_trained_cached(model_file.path, model_file.registered)
    with tempfile.TemporaryDirectory(prefix="convlens-predict-") as tmp:
        inbox, overlays = Path(tmp) / "in", Path(tmp) / "overlays"
        inbox.mkdir()
        paths = []
        for i, (_, data) in enumerate(uploads):  # numbered names: an upload's own name never becomes a path
            paths.append(inbox / f"{i:02d}")
            paths[-1].write_bytes(data)
        rows = classify_files(trained, paths, top_k=top_k, gradcam=gradcam, out_dir=overlays if gradcam else None,
                              within=inbox, conformal=SetOptions(alpha) if trained.calibration else None)
        return [UploadPrediction(
            file=name, predicted=r.get("predicted"), confidence=r.get("confidence"), top_k=r.get("top_k") or [],
            decision=r.get("decision"), prediction_set=r.get("prediction_set"), error=r.get("error"),
            overlay_png=base64.b64encode(Path(r["overlay"]).read_bytes()).decode() if r.get("overlay") else None)
            for (name, _), r in zip(uploads, rows, strict=True)]
