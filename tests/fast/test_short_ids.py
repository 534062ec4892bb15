"""Short ids: any unique prefix of 4+ characters names a job in the CLI and the dashboard's URLs; an ambiguous
one is one line listing the matches."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from convlens.db.models import Job
from convlens.db.session import ensure_current, session_scope
from convlens.worker import dependencies, registry
from convlens.worker.errors import AmbiguousId, JobNotFound
from convlens.worker.job_ids import resolve_id

IDS = ["abcd1234" + "0" * 24, "abcd5678" + "0" * 24, "ef01" + "1" * 28]


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVLENS_HOME", str(tmp_path))
    for key in ("CONVLENS_DATABASE_URL", "CONVLENS_BROKER_URL", "CONVLENS_ALLOWED_ROOTS"):
        monkeypatch.delenv(key, raising=False)
    ensure_current()
    with session_scope() as s:
        s.add_all(Job(id=i, kind="train", status="succeeded", params={}) for i in IDS)
    return tmp_path


def test_prefixes_resolve_or_say_why_not(home):
    assert resolve_id("abcd12") == IDS[0] and resolve_id("ef01") == IDS[2] and resolve_id(IDS[1]) == IDS[1]
    with pytest.raises(AmbiguousId, match=f"abcd is the start of 2 job ids \\({IDS[0]}, {IDS[1]}\\)"):
        resolve_id("abcd")
    for unknown in ("abc", "ffff", "abcd%", "ab_d", "ABCD", "0" * 33):  # too short, no match, not hex digits
        with pytest.raises(JobNotFound):
            resolve_id(unknown)


def test_the_cli_takes_short_ids(home):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "convlens.api.cli", *args], capture_output=True, text=True,
                              env=env, timeout=120)

    shown = cli("jobs", "show", "ef01", "--json")
    assert shown.returncode == 0 and f'"id": "{IDS[2]}"' in shown.stdout
    ambiguous = cli("results", "metrics", "abcd")
    assert ambiguous.returncode == 2 and len(ambiguous.stderr.strip().splitlines()) == 1
    assert IDS[0] in ambiguous.stderr and IDS[1] in ambiguous.stderr
    refused = cli("submit", "layers", "--model", "abcd")  # checked before anything is written or queued
    assert refused.returncode == 2 and "abcd is the start of 2 job ids" in refused.stderr


def test_short_ids_name_models_sweeps_and_dependencies_for_http_and_cli_alike(home):
    """--model, SWEEP:best and --after are resolved where every job is created (worker.steps), not by the CLI."""
    sweep = "5eed" + "2" * 28
    with session_scope() as s:
        s.add(Job(id=sweep, kind="sweep", status="succeeded", params={}, result={"best": {"job_id": IDS[2]}}))
    assert registry.resolve_ref("ef01") == IDS[2] and registry.resolve_ref("5eed:best") == IDS[2]
    with pytest.raises(AmbiguousId, match="abcd is the start of 2 job ids"):
        registry.resolve_ref("abcd")
    with pytest.raises(registry.UnknownModel, match="--model ffff: no registered model of that name"):
        registry.resolve_ref("ffff")
    assert dependencies.check_after(["ef01", IDS[0], "ef011"]) == [IDS[2], IDS[0]]
    with pytest.raises(dependencies.DependencyRefused, match="--after ffff: no such job"):
        dependencies.check_after(["ffff"])
