"""POST /predict in-process (FastAPI's TestClient) over a SQLite file and a registered (untrained) model: good
PNG and JPEG uploads are classified with their overlays; a decompression bomb, text named .png, a 50 MB body,
no token and a read token are each refused with one line; nothing is written to the jobs table."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import numpy as np
import pytest
from fastapi.testclient import TestClient
from helpers import saved_model
from PIL import Image
from sqlalchemy import func, select

from convlens.db.models import Job
from convlens.db.session import ensure_current, session_scope


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVLENS_HOME", str(tmp_path))
    monkeypatch.delenv("CONVLENS_DATABASE_URL", raising=False)
    ensure_current()
    from convlens.api.http import app
    from convlens.api.tokens import create_token
    from convlens.worker import registry

    with session_scope() as s:
        job = Job(kind="train", status="succeeded", name="pets", result={"accuracy": 0.5})
        s.add(job)
        s.flush()
        path = saved_model(tmp_path / "runs" / job.id / "model.keras", ["cat", "dog", "fox"])
        registry.register(s, job.id, str(path), "seed", ["cat", "dog", "fox"], None)
    token = create_token("uploader", "submit").token
    return TestClient(app, headers={"Authorization": f"Bearer {token}"}), app, create_token


def _image(fmt: str, size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (*size, 3), np.uint8)).save(buf, fmt)
    return buf.getvalue()


def _bomb(side: int = 100_000) -> bytes:
    """A valid PNG header that claims side x side pixels, with almost no data behind it."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def _jobs() -> int:
    with session_scope() as s:
        return s.scalar(select(func.count()).select_from(Job))


def test_images_are_classified_in_the_request(site):
    client, _, _ = site
    files = [("file", ("cat.png", _image("PNG", (32, 32)), "image/png")),
             ("file", ("big.jpg", _image("JPEG", (120, 90)), "image/jpeg")),
             ("file", ("notes.png", b"just some text", "image/png"))]
    r = client.post("/predict", params={"model": "pets", "gradcam": "true", "top_k": 3}, files=files)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "pets:1"
    good, jpeg, text = body["predictions"]
    for p in (good, jpeg):
        assert p["predicted"] in ("cat", "dog", "fox") and p["error"] is None
        assert [c for c, _ in p["top_k"]][0] == p["predicted"]
        assert sum(prob for _, prob in p["top_k"]) == pytest.approx(1.0, abs=1e-4)
    overlay = Image.open(io.BytesIO(base64.b64decode(jpeg["overlay_png"])))
    assert overlay.format == "PNG" and overlay.size == (90, 120)  # the upload's own size
    assert text["file"] == "notes.png" and text["predicted"] is None and "not a readable image" in text["error"]
    assert _jobs() == 1  # the train job only: a prediction is no job


@pytest.mark.parametrize(("files", "query", "status", "says"), [
    ([("file", ("notes.png", b"just some text", "image/png"))], {}, 422, "notes.png: not a readable image"),
    ([("file", ("bomb.png", _bomb(), "image/png"))], {}, 422, "image too large"),
    ([], {}, 422, "no image"),
    ([("file", ("cat.png", b"x", "image/png"))], {"model": "nobody"}, 422, "no registered model"),
])
def test_bad_uploads_are_one_line(site, files, query, status, says):
    client, _, _ = site
    r = client.post("/predict", params={"model": "pets", **query}, files=files or None,
                    data=None if files else {"x": "1"})
    assert r.status_code == status and says in r.json()["detail"]["message"], r.text


def test_limits_and_scopes(site):
    client, app, create_token = site
    huge = client.post("/predict?model=pets", content=b"0" * (50 * 2**20),
                       headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert huge.status_code == 413 and "over 41,943,040 bytes" in huge.json()["detail"]["message"]
    png = [("file", ("cat.png", _image("PNG", (32, 32)), "image/png"))]
    assert TestClient(app).post("/predict?model=pets", files=png).status_code == 401
    reader = TestClient(app, headers={"Authorization": f"Bearer {create_token('looker', 'read').token}"})
    assert reader.post("/predict?model=pets", files=png).status_code == 403
    many = [("file", (f"{i}.png", _image("PNG", (8, 8)), "image/png")) for i in range(17)]
    assert client.post("/predict?model=pets", files=many).status_code == 400  # over 16 files: the parser refuses
