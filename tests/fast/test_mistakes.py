"""A user's mistakes on the command line get one line naming the problem and exit code 2, and write nothing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

CASES = [
    (("results", "metrics", "nope"), "job nope not found"),
    (("results", "predictions", "0" * 32), "not found"),
    (("results", "predictions", "0" * 32, "--min-confidence", "2"), "--min-confidence"),
    (("jobs", "list", "--status", "runing"), "--status 'runing': one of waiting"),
    (("jobs", "list", "--kind", "trian"), "--kind 'trian': one of train"),
    (("jobs", "show", "0" * 32), "not found"),
    (("submit", "layers", "--model", "a" * 32), "no job with that id"),
    (("submit", "classify", "/nonexistent-folder", "--model", "a" * 32), "not a folder"),
    (("submit", "train", "--after", "b" * 32), "no such job"),
]


@pytest.mark.parametrize(("args", "message"), CASES, ids=[" ".join(a)[:40] for a, _ in CASES])
def test_each_mistake_is_one_line_and_exit_2(tmp_path, args, message):
    env = {**os.environ, "CONVLENS_HOME": str(tmp_path), "TF_CPP_MIN_LOG_LEVEL": "2"}
    for key in ("CONVLENS_DATABASE_URL", "CONVLENS_BROKER_URL", "CONVLENS_ALLOWED_ROOTS"):
        env.pop(key, None)
    proc = subprocess.run([sys.executable, "-m", "convlens.api.cli", *args], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-500:], proc.stderr[-1500:])
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Error:" not in lines[0], proc.stderr
    listed = subprocess.run([sys.executable, "-m", "convlens.api.cli", "jobs", "list", "--json"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert listed.stdout.strip() == "[]"  # nothing was written
