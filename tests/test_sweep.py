"""Sweeps through the queue: two real workers on the embedded default (SQLite and the embedded Redis) run a
sweep's trials as train jobs, at most `--parallel` at once. A worker killed with kill -9 mid-sweep and a
restart of the embedded Redis lose no trial; the pruner stops a diverging trial after its second epoch; the
best trial's model is usable as `--model SWEEP:best`."""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from conftest import DATA_DIR
from convlens.db.models import Job
from convlens.db.session import session_scope
from convlens.worker.kinds.sweep import SweepParams
from convlens.worker.kinds.sweep_study import propose
from folders import make_messy_folder
from services import Worker, cli, cli_json, embedded_fleet, wait_for

pytestmark = [pytest.mark.services, pytest.mark.cifar]

TINY = ["--preset", "seed", "--limit", "600", "--batch-size", "64"]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    with embedded_fleet(tmp_path_factory.mktemp("sweep-home"), ["w1@convlens-test", "w2@convlens-test"],
                        CONVLENS_DATA_DIR=str(DATA_DIR)) as f:
        yield f


def _trials(home: Path, sweep_id: str) -> list[Job]:
    with session_scope(f"sqlite:///{home / 'convlens.db'}") as s:
        rows = list(s.scalars(select(Job).where(Job.parent_id == sweep_id).order_by(Job.part)))
        s.expunge_all()
        return rows


def _restart_embedded_redis(env: dict, home: Path) -> None:
    """Stops the embedded Redis (it writes its append-only file) and starts it again, as a reboot would."""
    pid = int((home / "redis.pid").read_text())
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), 30, what="the embedded Redis to stop")
    time.sleep(3)  # the workers see it gone
    subprocess.run([sys.executable, "-c", "from convlens.worker.broker import ensure_embedded_redis as e; e()"],
                   env=env, check=True, timeout=60)


def test_a_sweep_spreads_over_two_workers_and_loses_no_trial(fleet, tmp_path, cifar):
    env, home = fleet["env"], fleet["home"]
    sweep_id = cli(env, "submit", "sweep", "--trials", "6", "--parallel", "2", "--space",
                   "learning_rate=log:5e-4:5e-3", "--space", "batch_size=choice:32,64", "--epochs", "2",
                   "--pruner", "none", *TINY[:-2]).stdout.strip()

    def first_two_running() -> list[Job]:  # --parallel 2: both workers busy, no third trial yet
        trials = _trials(home, sweep_id)
        return trials if len(trials) == 2 and all(t.status == "running" for t in trials) else []

    running = wait_for(first_two_running, 300, interval=0.2, what="the first two trials running at once")
    victim_trial = running[0]
    victim = next(w for w in fleet["workers"] if w.name == victim_trial.worker)
    os.killpg(victim.proc.pid, signal.SIGKILL)  # the whole worker, mid-trial
    victim.proc.wait(10)
    spare = Worker(env, "spare@convlens-test", tmp_path)
    fleet["workers"][fleet["workers"].index(victim)] = spare
    spare.wait_ready()
    wait_for(lambda: len(_trials(home, sweep_id)) >= 4, 600, what="the sweep's third and fourth trials")
    _restart_embedded_redis(env, home)

    sweep = cli_json(env, "jobs", "wait", sweep_id, "--timeout", "900", timeout=1000)
    assert sweep["status"] == "succeeded", sweep
    trials = _trials(home, sweep_id)
    assert [t.part for t in trials] == list(range(6)) and {t.kind for t in trials} == {"train"}
    assert all(t.status == "succeeded" for t in trials)
    assert next(t for t in trials if t.id == victim_trial.id).attempts >= 1  # re-run, not lost
    assert len({t.worker for t in trials}) >= 2
    # The objective is each trial's best validation accuracy over its epochs, read here from its own history.
    values = {t.id: max(e["val_accuracy"] for e in t.history) for t in trials}
    result = sweep["result"]
    assert [t["state"] for t in result["trials"]] == ["complete"] * 6
    assert {t["job_id"]: t["value"] for t in result["trials"]} == pytest.approx(values)
    best = max(values, key=values.get)
    assert result["best"]["job_id"] == best and result["best"]["value"] == pytest.approx(values[best])
    assert sum(result["importances"].values()) == pytest.approx(1.0)
    # The importances are what Optuna's evaluator named in the result computes, with the stored seed, from the
    # trials as the result lists them (an independent study built here).
    import optuna

    from convlens.ml.search_space import distributions

    independent = optuna.create_study(direction="maximize")
    dists = distributions(["learning_rate=log:5e-4:5e-3", "batch_size=choice:32,64"])
    for t in result["trials"]:
        independent.add_trial(optuna.trial.create_trial(params=t["params"], distributions=dists, value=t["value"]))
    evaluator = getattr(optuna.importance, result["importance_method"])(seed=result["importance_seed"])
    assert result["importances"] == pytest.approx(optuna.importance.get_param_importances(independent,
                                                                                          evaluator=evaluator))
    for t in trials:  # each trial trained with exactly the values its row says were tried
        tried = next(r for r in result["trials"] if r["job_id"] == t.id)["params"]
        assert tried == {k: t.params[k] for k in ("learning_rate", "batch_size")}

    table = cli(env, "results", "trials", sweep_id[:8], "--csv").stdout
    rows = list(csv.DictReader(io.StringIO(table)))
    assert [int(r["trial"]) for r in rows] == list(range(6)) and {r["job"] for r in rows} == set(values)

    folder = tmp_path / "images"
    make_messy_folder(folder, cifar, n=20)
    classify = cli_json(env, "submit", "classify", str(folder), "--model", f"{sweep_id[:8]}:best", "--wait",
                        timeout=600)
    assert classify["status"] == "succeeded", classify
    assert classify["params"]["model"] == best


def test_the_pruner_stops_a_diverging_trial(fleet):
    """A grid over three learning rates whose seed puts the diverging one (9.0) last: once two trials completed,
    an epoch of it (from the second on) falls below their median there and it stops, its epochs kept."""
    env, home = fleet["env"], fleet["home"]
    space = ["learning_rate=choice:0.002,0.003,9.0"]

    def order(seed: int) -> list[float]:
        p = SweepParams.model_validate({"space": space, "trials": 3, "sampler": "grid", "sampler_seed": seed})
        return [values["learning_rate"] for values, _ in propose(p, "any", [], 3)]

    seed = next(s for s in range(50) if order(s)[2] == 9.0)
    sweep = cli_json(env, "submit", "sweep", "--trials", "3", "--parallel", "1", "--sampler", "grid",
                     "--sampler-seed", str(seed), "--space", space[0], "--epochs", "4", *TINY, "--val-fraction", "0.3",
                     "--wait", timeout=900)  # 180 validation images: 12 (the default share) made ties with 9.0 likely
    assert sweep["status"] == "succeeded", sweep
    states = [(t["params"]["learning_rate"], t["state"]) for t in sweep["result"]["trials"]]
    assert states == [(order(seed)[0], "complete"), (order(seed)[1], "complete"), (9.0, "pruned")]
    stopped = sweep["result"]["trials"][2]["epochs"]
    assert 2 <= stopped < 4  # judged from the second epoch on, and stopped before the last
    pruned = _trials(home, sweep["id"])[2]
    assert pruned.status == "succeeded" and pruned.result["pruned_at"] == stopped == len(pruned.history)
    assert sweep["result"]["best"]["state"] == "complete"
