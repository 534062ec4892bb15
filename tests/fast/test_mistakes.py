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


def test_questions_a_job_cannot_answer_are_mistakes(home, tmp_path):
    """Predictions of a job that stores none, and a label that is none of the job's classes: one line, exit 2
    (they answered `(no rows)` with exit 0)."""
    from convlens.db.models import Job
    from convlens.db.session import session_scope
    from convlens.worker import registry

    with session_scope() as s:
        train = Job(kind="train", status="succeeded", name="pets", result={"accuracy": 0.5})
        s.add(train)
        s.flush()
        registry.register(s, train.id, str(tmp_path / "m.keras"), "seed", ["cat", "dog"], None)
        classify = Job(kind="classify", status="succeeded", params={"folder": str(tmp_path), "model": train.id})
        s.add(classify)
        s.flush()
        train_id, classify_id = train.id, classify.id
    env = {**os.environ, "CONVLENS_HOME": str(home)}
    env.pop("CONVLENS_DATABASE_URL", None)
    for args, says in (((train_id[:8],), "stores no predictions (classify jobs do)"),
                       ((classify_id, "--label", "kat"), "--label kat: not one of this job's classes (cat, dog)"),
                       ((classify_id, "--true-label", "kat"), "not one of this job's classes")):
        proc = subprocess.run([sys.executable, "-m", "convlens.api.cli", "results", "predictions", *args],
                              capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == 2 and says in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, \
            (args, proc.returncode, proc.stderr)
    ok = subprocess.run([sys.executable, "-m", "convlens.api.cli", "results", "predictions", classify_id, "--label",
                         "cat"], capture_output=True, text=True, env=env, timeout=120)
    assert ok.returncode == 0, ok.stderr
    # A file that is no model is refused before a job row is written (it left a failed row, said twice).
    (tmp_path / "notes.keras").write_text("not a model")
    bad = subprocess.run([sys.executable, "-m", "convlens.api.cli", "models", "import", str(tmp_path / "notes.keras"),
                          "--name", "x", "--classes", "a,b"], capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and "not a .keras archive" in bad.stderr, bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    with session_scope() as s:
        assert s.query(Job).filter(Job.kind == "import").count() == 0
