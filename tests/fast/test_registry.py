"""The model registry on a SQLite file: versions per name, aliases, references resolving to the train job
that made the model, and the CLI and HTTP views (a wrong reference is one line, exit 2 / 404)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient

from convlens.db.models import Job
from convlens.db.session import ensure_current, session_scope
from convlens.ml.errors import ConvlensError
from convlens.worker import registry


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVLENS_HOME", str(tmp_path))
    monkeypatch.delenv("CONVLENS_DATABASE_URL", raising=False)
    ensure_current()
    return tmp_path


def _train(name: str | None, parent: str | None = None, accuracy: float = 0.5) -> str:
    with session_scope() as s:
        job = Job(kind="train", status="succeeded", name=name, parent_id=parent,
                  result={"accuracy": accuracy, "macro_f1": accuracy, "temperature": 1.2})
        s.add(job)
        s.flush()
        registry.register(s, job.id, f"/nowhere/{job.id}.keras", "seed", ["cat", "dog"], None)
        return job.id


def test_versions_aliases_and_references(home):
    first, second = _train("Base Line"), _train("Base Line", accuracy=0.7)
    other = _train(None)
    with session_scope() as s:
        sweep = Job(kind="sweep", status="running", name=None)
        s.add(sweep)
        s.flush()
        sweep_id = sweep.id
    trial = _train(None, parent=sweep_id)
    refs = {v.ref: v.job_id for v in registry.list_models()}
    assert refs == {"base-line:2": second, "base-line:1": first, other[:8]: other,
                    f"sweep-{sweep_id[:8]}:1": trial}
    # An unnamed train takes no shared name: its short id is its reference, and it cannot be aliased.
    assert registry.resolve_ref(other[:8]) == other and registry.resolve("seed") is None
    with pytest.raises(ConvlensError, match="has no name to alias"):
        registry.set_alias(other[:8], "champion")
    with session_scope() as s:  # a redelivered step registers again: same version
        registry.register(s, first, "/elsewhere.keras", "seed", ["cat", "dog"], None)
    assert registry.show("base-line:1").path == "/elsewhere.keras" and len(registry.list_models()) == 4
    assert registry.resolve("base-line") == second  # a bare name: its latest version
    assert registry.resolve("base-line:1") == first
    assert registry.set_alias("base-line:1", "champion").aliases == ["champion"]
    assert registry.resolve_ref("base-line@champion") == first
    registry.set_alias("base-line:2", "champion")  # moved, not duplicated
    assert registry.resolve("base-line@champion") == second and registry.show("base-line:1").aliases == []
    for bad in ("base-line:9", "base-line@nope", "Base Line", "nothing"):
        assert registry.resolve(bad) is None
        with pytest.raises(registry.UnknownModel, match="no registered model"):
            registry.resolve_ref(bad)
    view = registry.show(second)  # by its train job's id too
    assert (view.accuracy, view.temperature, view.present) == (0.7, 1.2, False) and "divided by 255" in view.input
    assert registry.delete_model("base-line:2") == "base-line:2"
    assert registry.resolve("base-line") == first and registry.resolve("base-line@champion") is None


def test_the_cli_and_http_views(home):
    first = _train("pets")
    env = {"CONVLENS_HOME": str(home), "PATH": "/usr/bin:/bin"}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "convlens.api.cli", *args], capture_output=True, text=True,
                              env=env, timeout=120)

    listed = json.loads(cli("models", "list", "--json").stdout)
    assert [(m["ref"], m["job_id"]) for m in listed] == [("pets:1", first)]
    assert cli("models", "alias", "pets", "prod").stdout.strip() == "pets@prod -> pets:1"
    shown = cli("models", "show", "pets@prod")
    assert shown.returncode == 0 and "class_names      cat, dog" in shown.stdout
    wrong = cli("models", "show", "pets:7")
    assert wrong.returncode == 2 and wrong.stderr.count("\n") == 1 and "no registered model 'pets:7'" in wrong.stderr
    bad_alias = cli("models", "alias", "pets", "Not OK")
    assert bad_alias.returncode == 2 and "alias 'Not OK'" in bad_alias.stderr

    from convlens.api.http import app
    from convlens.api.tokens import create_token

    client = TestClient(app, headers={"Authorization": f"Bearer {create_token('reader', 'read').token}"})
    assert [m["ref"] for m in client.get("/models").json()["models"]] == ["pets:1"]
    assert client.get("/models/pets@prod").json()["aliases"] == ["prod"]
    missing = client.get("/models/pets:7")
    assert missing.status_code == 404 and "no registered model" in missing.json()["detail"]["message"]
    assert TestClient(app).get("/models").status_code == 401
    page = client.get("/ui/models")
    assert page.status_code == 200 and "pets:1" in page.text and "@prod" in page.text
