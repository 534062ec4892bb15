"""A home and a dataset found from anywhere (issue 46): commands find the project's .convlens in a parent folder as
git finds .git, say so when they start a new home, remember the dataset folder they were given, and a missing
dataset names CONVLENS_DATA_DIR and the archive to put there."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def _cli(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("CONVLENS_HOME", "CONVLENS_DATA_DIR",
                                                             "CONVLENS_DATABASE_URL", "CONVLENS_BROKER_URL")}
    return subprocess.run([sys.executable, "-m", "convlens.api.cli", *args], cwd=cwd, env={**base, **env},
                          capture_output=True, text=True, timeout=120)


def test_a_subfolder_finds_its_projects_home_and_dataset(tmp_path):
    project, deeper = tmp_path / "project", tmp_path / "project" / "src" / "deeper"
    deeper.mkdir(parents=True)
    data = tmp_path / "data"
    (data / "cifar-10-batches-bin").mkdir(parents=True)
    first = _cli(project, "tokens", "create", "alice", "--scope", "read", CONVLENS_DATA_DIR=str(data))
    assert first.returncode == 0 and f"a new home at {project / '.convlens'}" in first.stderr, first.stderr
    later = _cli(deeper, "tokens", "list")
    assert later.returncode == 0 and "alice" in later.stdout and "new home" not in later.stderr, later
    assert not (deeper / ".convlens").exists()
    found = subprocess.run([sys.executable, "-c", "from convlens.ml.settings import settings; "
                            "print(settings().datasets_dir)"], cwd=deeper, capture_output=True, text=True,
                           env={k: v for k, v in os.environ.items() if k not in ("CONVLENS_HOME", "CONVLENS_DATA_DIR")})
    assert found.stdout.strip() == str(data), found


def test_a_missing_dataset_names_the_setting_and_the_archive(tmp_path):
    from convlens.ml.data.cifar import load_cifar10
    from convlens.ml.errors import DatasetError

    try:
        load_cifar10(tmp_path / "nothing", download=False)
    except DatasetError as exc:
        message = str(exc)
    assert "CONVLENS_DATA_DIR" in message and "cifar-10-binary.tar.gz" in message and "\n" not in message
