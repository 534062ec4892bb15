"""What an outsider broke (issue 45), at the level of the mechanism: a model file is code (safe mode whatever its
sidecar says), its sidecar and archive are read confined and bounded, a symlinked class folder is refused, user
strings never reach mathtext, searches refuse NUL and control characters, and tokens never reach the access log
however they are spelled. The same findings against a real API, workers and both databases: tests/test_outsider.py."""

from __future__ import annotations

import json
import logging
import os
import time

import numpy as np
import psutil
import pytest
from helpers import image_folder, lambda_model, saved_model, zip_bomb

from convlens.api.job_search import JobSearch, SearchError
from convlens.api.observe import NoSecrets, without_secrets
from convlens.ml.data.folders import load_image_folder
from convlens.ml.errors import DatasetError
from convlens.ml.keras_file import ModelFileRefused
from convlens.ml.saved import load_trained
from convlens.worker.paths import check_dataset

TOKEN = "Q" * 20 + "-_" + "z" * 21  # 43 URL-safe characters, as secrets.token_urlsafe(32) makes


@pytest.mark.parametrize("claim", [True, False])
def test_a_lambda_model_never_runs_whatever_its_sidecar_claims(tmp_path, claim):
    import keras

    marker = tmp_path / "ran"
    model = lambda_model(tmp_path / "up" / "evil.keras", ["a", "b"], marker, savedmodel_claim=claim)
    says = "loaded only as a registered model" if claim else "holds Python code"
    with pytest.raises(ModelFileRefused, match=says):
        load_trained(model)
    assert not marker.exists()
    # The control: the same file, loaded as the old code did for such a sidecar, runs the attacker's code.
    keras.models.load_model(model, safe_mode=False)(np.zeros((1, 32, 32, 3), np.float32))
    assert marker.exists()


def test_a_sidecar_linked_to_the_database_is_never_opened(home, tmp_path):
    import fcntl

    model = saved_model(tmp_path / "up" / "side.keras", ["a", "b"])
    sidecar = model.with_suffix(".json")
    db = home / "convlens.db"
    with open(db, "rb+") as held:  # a POSIX lock that closing any descriptor of the file would drop
        fcntl.lockf(held, fcntl.LOCK_SH | fcntl.LOCK_NB)
        sidecar.unlink()
        sidecar.symlink_to(db)
        with pytest.raises(ModelFileRefused, match="outside"):
            load_trained(model)
        sidecar.unlink()
        os.link(db, sidecar)
        with pytest.raises(ModelFileRefused, match="convlens's own files"):
            load_trained(model)
        locks = open("/proc/locks").read()  # noqa: SIM115
        assert f":{os.stat(db).st_ino} " in locks, "the lock on the database was dropped"
    # The model file itself swapped for a link to the database: refused the same way.
    sidecar.unlink()
    sidecar.write_text(json.dumps({"class_names": ["a", "b"]}))
    model.unlink()
    model.symlink_to(db)
    with pytest.raises(ModelFileRefused, match="outside"):
        load_trained(model)


def test_a_zip_bomb_is_refused_within_a_second_without_inflating(tmp_path_factory):
    folder = tmp_path_factory.getbasetemp() / "bomb"
    folder.mkdir(exist_ok=True)
    bomb = zip_bomb(folder / "bomb.keras")
    (folder / "bomb.json").write_text(json.dumps({"class_names": ["a", "b"]}))
    me = psutil.Process()
    before, started = me.memory_info().rss, time.monotonic()
    with pytest.raises(ModelFileRefused, match="config.json inflates to 1,073,741,824 bytes"):
        load_trained(bomb)
    took, grown = time.monotonic() - started, me.memory_info().rss - before
    assert took < 1.0 and grown < 50e6, (took, grown)


def test_a_symlinked_class_folder_is_refused_naming_it(tmp_path):
    root = tmp_path / "ds"
    image_folder(root, per_class=3)
    (root / "b").symlink_to("/usr")
    for check in (lambda: check_dataset(str(root)), lambda: load_image_folder(root)):
        with pytest.raises(DatasetError, match="class folder b is a symlink"):
            check()


@pytest.mark.parametrize("label", ["$x^{$", r"$\undefinedmacro$", "a_b^c", "$$"])
def test_user_strings_are_drawn_as_text_not_mathtext(tmp_path, label):
    from convlens.ml.plots import bars_svg, lines_svg, plot_bars

    plot_bars([label, "b"], {label: [0.1, 0.2]}, label, tmp_path / "bars.png")
    assert "<svg" in bars_svg([label, "b"], {label: [0.1, 0.2]}, label)
    assert "<svg" in lines_svg([label, "b"], {label: [0.1, None]}, label)


@pytest.mark.parametrize(("filter_", "sort", "tags", "field"), [
    ('params.x = "\0"', None, [], "filter"), ('name = "a\x07"', None, [], "filter"), (None, "name\0", [], "sort"),
    (None, None, ["\0"], "tag"), (None, None, ["ok", "bad\x1b[31m"], "tag")])
def test_search_texts_with_nul_or_control_characters_are_refused(filter_, sort, tags, field):
    with pytest.raises(SearchError, match=f"^{field}: contains a (NUL byte|control character)"):
        JobSearch.parse(filter_, sort, tags)


@pytest.mark.parametrize("query", [f"token={TOKEN}", f"%74oken={TOKEN}", f"tok%65n={TOKEN}", f"token%00={TOKEN}",
                                   f"TOKEN={TOKEN}&status=queued", f"next=%2F%3Ftoken%3D{TOKEN}",
                                   f"a=1&token={TOKEN}&token={TOKEN}"])
def test_no_spelling_of_a_token_reaches_the_access_log(query):
    record = logging.LogRecord("uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5", "GET", f"/?{query}", "1.1", 200), None)
    NoSecrets().filter(record)
    line = record.getMessage()
    assert TOKEN not in line and "[hidden]" in line, line
    assert without_secrets("/ui/jobs/0123456789abcdef0123456789abcdef") == "/ui/jobs/0123456789abcdef0123456789abcdef"


def test_thumbnails_of_a_folder_stored_relative_to_the_home_are_served(home, tmp_path):
    """A study's classify child names its sample as `runs/ID/sample` (relative): every thumbnail was a 500."""
    from fastapi.testclient import TestClient
    from sqlalchemy import select

    from convlens.api.http import app
    from convlens.api.tokens import create_token
    from convlens.db.models import Prediction
    from convlens.db.session import session_scope
    from convlens.worker import steps

    owner = "0123456789abcdef0123456789abcdef"
    image_folder(home / "runs" / owner / "sample", per_class=2)
    model = saved_model(tmp_path / "m.keras", ["cat", "dog"])
    job_id = steps.create_job("classify", {"folder": f"runs/{owner}/sample", "model": str(model)},
                              strict_paths=False)
    steps.execute_inline(job_id)
    with session_scope() as s:
        ids = list(s.scalars(select(Prediction.id).where(Prediction.job_id == job_id)))
    assert len(ids) == 4
    client = TestClient(app, headers={"Authorization": f"Bearer {create_token('reader', 'read').token}"})
    for pid in ids:
        r = client.get(f"/ui/jobs/{job_id}/images/{pid}")
        assert r.status_code == 200 and r.content.startswith(b"\x89PNG"), (r.status_code, r.text[:200])
    for query in ('filter=params.x%20%3D%20%22%00%22', "tag=%00", "tag=a%1Bb", "sort=name%00"):
        r = client.get(f"/ui/jobs/rows?{query}")
        assert r.status_code == 422 and "contains a" in r.text, (query, r.status_code, r.text[:300])
        api = client.get(f"/jobs?{query}")
        assert api.status_code == 422, (query, api.status_code, api.text[:300])
