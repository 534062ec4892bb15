"""First use of a fresh CONVLENS_HOME by several processes at once: the schema is created exactly once."""

from __future__ import annotations

import os
import subprocess
import sys


def test_parallel_first_runs_all_succeed(tmp_path):
    code = "from convlens.db.session import ensure_current, current_revision, head_revision; ensure_current(); " \
           "assert current_revision() == head_revision()"
    for trial in range(5):
        env = {**os.environ, "CONVLENS_HOME": str(tmp_path / f"home{trial}")}
        env.pop("CONVLENS_DATABASE_URL", None)
        procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE, text=True)
                 for _ in range(6)]
        errors = [p.communicate(timeout=120)[1] for p in procs]
        assert [p.returncode for p in procs] == [0] * 6, errors
