"""Paths taken from the environment: CONVLENS_HOME (runs, models, plots) and CONVLENS_DATA_DIR (datasets)."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    return Path(os.environ.get("CONVLENS_HOME") or ".convlens").expanduser().resolve()


def data_dir() -> Path:
    env = os.environ.get("CONVLENS_DATA_DIR")
    return Path(env).expanduser().resolve() if env else home() / "datasets"
