"""Shared fixtures: real CIFAR-10 from ../shared, a private CONVLENS_HOME, a small model trained once.

Tiers (pyproject's markers): tests/fast has none; `cifar` (set here, from the fixtures a test uses),
`services` and `browser` (set by each module) say what else a test needs.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = (ROOT.parent / "shared" / "datasets").resolve()
os.environ["CONVLENS_DATA_DIR"] = os.environ.get("CONVLENS_DATA_DIR") or str(SHARED)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
DATA_DIR = Path(os.environ["CONVLENS_DATA_DIR"])


def pytest_collection_modifyitems(items):
    for item in items:
        if {"cifar", "trained"} & set(item.fixturenames):
            item.add_marker(pytest.mark.cifar)


@pytest.fixture(scope="session", autouse=True)
def convlens_home(tmp_path_factory) -> Path:
    """Every test session writes under its own CONVLENS_HOME (and the embedded SQLite/Redis live there)."""
    home = tmp_path_factory.mktemp("convlens-home")
    os.environ["CONVLENS_HOME"] = str(home)
    for key in ("CONVLENS_DATABASE_URL", "CONVLENS_BROKER_URL", "CONVLENS_ALLOWED_ROOTS"):
        os.environ.pop(key, None)
    return home


@pytest.fixture(scope="session")
def cifar():
    from convlens.ml.data.cifar import load_cifar10

    return load_cifar10(DATA_DIR, download=False)


@pytest.fixture(scope="session")
def trained(tmp_path_factory, cifar):
    """The seed preset trained briefly on 10,000 real training images."""
    from convlens.ml.config import TrainConfig
    from convlens.ml.saved import load_trained
    from convlens.ml.train import train

    out = tmp_path_factory.mktemp("trained")
    result = train(TrainConfig(limit=10000, epochs=6, batch_size=128, flip=True, translation=0.0), out,
                   data=cifar)
    model = load_trained(result["paths"]["model"])
    return {"result": result, "model": model, "path": Path(result["paths"]["model"])}


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh CONVLENS_HOME with its SQLite database at the current revision."""
    from convlens.db.session import ensure_current

    monkeypatch.setenv("CONVLENS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CONVLENS_DATABASE_URL", raising=False)
    ensure_current()
    return tmp_path / "home"
