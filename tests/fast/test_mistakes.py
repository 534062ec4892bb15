"""A user's mistakes on the command line get one line naming the problem and exit code 2, and write nothing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mistakes import CASES


@pytest.mark.parametrize(("args", "message"), [c[:2] for c in CASES], ids=[" ".join(c[0])[:40] for c in CASES])
def test_each_mistake_is_one_line_and_exit_2(tmp_path, args, message):
    env = {**os.environ, "CONVLENS_HOME": str(tmp_path), "TF_CPP_MIN_LOG_LEVEL": "2"}
    for key in ("CONVLENS_DATABASE_URL", "CONVLENS_BROKER_URL", "CONVLENS_ALLOWED_ROOTS"):
        env.pop(key, None)
    args = [a.replace("ROOT", str(tmp_path)) for a in args]
    proc = subprocess.run([sys.executable, "-m", "convlens.api.cli", *args], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-500:], proc.stderr[-1500:])
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Error:" not in lines[0], proc.stderr
    listed = subprocess.run([sys.executable, "-m", "convlens.api.cli", "jobs", "list", "--json"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert listed.stdout.strip() == "[]"  # nothing was written
