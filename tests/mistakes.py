"""The table of a user's mistakes: what the CLI is given, and what HTTP is sent for the same mistake.

Each row: (CLI arguments, the words its one line must hold, the HTTP request (method, path, body or query),
the HTTP status); ROOT stands for a folder the test may read. tests/fast/test_mistakes.py runs the CLI column
on SQLite; tests/test_mistakes_postgres.py runs both columns on PostgreSQL, through a real `convlens api`.
"""

from __future__ import annotations

UNKNOWN = "0" * 32
CASES = [
    (("results", "metrics", "nope"), "job nope not found", ("GET", "/jobs/nope/metrics", None), 404),
    (("results", "predictions", UNKNOWN), "not found", ("GET", f"/jobs/{UNKNOWN}/predictions", None), 404),
    (("results", "predictions", UNKNOWN, "--min-confidence", "2"), "not found",  # the job is checked first
     ("GET", f"/jobs/{UNKNOWN}/predictions", {"min_confidence": 2}), 404),
    (("jobs", "list", "--status", "runing"), "--status 'runing': one of waiting",
     ("GET", "/jobs", {"status": "runing"}), 422),
    (("jobs", "list", "--kind", "trian"), "--kind 'trian': one of train", ("GET", "/jobs", {"kind": "trian"}), 422),
    (("jobs", "show", UNKNOWN), "not found", ("GET", f"/jobs/{UNKNOWN}", None), 404),
    (("jobs", "cancel", UNKNOWN), "not found", ("POST", f"/jobs/{UNKNOWN}/cancel", None), 404),
    (("submit", "layers", "--model", "a" * 32), "no job with that id",
     ("POST", "/jobs", {"kind": "layers", "params": {"model": "a" * 32}}), 422),
    (("submit", "classify", "ROOT/nonexistent-folder", "--model", "a" * 32), "not a folder",
     ("POST", "/jobs", {"kind": "classify", "params": {"folder": "ROOT/nonexistent-folder", "model": "a" * 32}}),
     403),
    (("submit", "train", "--after", "b" * 32), "no such job",
     ("POST", "/jobs", {"kind": "train", "params": {}, "after": ["b" * 32]}), 422),
    (("submit", "classify", "ROOT", "--model", "no-such-model"), "no registered model",
     ("POST", "/jobs", {"kind": "classify", "params": {"folder": "ROOT", "model": "no-such-model"}}), 422),
    (("submit", "classify", "ROOT", "--model", f"{UNKNOWN}:best"), "no sweep with id",
     ("POST", "/jobs", {"kind": "classify", "params": {"folder": "ROOT", "model": f"{UNKNOWN}:best"}}), 422),
    (("submit", "sweep", "--space", "epochs=int:1:3"), "'epochs' cannot be searched",
     ("POST", "/jobs", {"kind": "sweep", "params": {"space": ["epochs=int:1:3"]}}), 422),
    (("submit", "sweep", "--space", "learning_rate=log:1e-4:20"), "less than or equal to 10",
     ("POST", "/jobs", {"kind": "sweep", "params": {"space": ["learning_rate=log:1e-4:20"]}}), 422),
    (("results", "trials", UNKNOWN), "not found", ("GET", f"/jobs/{UNKNOWN}/trials", None), 404),
    (("models", "show", "no-such-model"), "no registered model", ("GET", "/models/no-such-model", None), 404),
    (("submit", "sweep", "--space", "learning_rate=log:1e-4:1e-2", "--epochs", "2", "--pruner", "median"),
     "could stop none before its end", ("POST", "/jobs", {"kind": "sweep", "params": {
         "space": ["learning_rate=log:1e-4:1e-2"], "epochs": 2, "pruner": "median"}}), 422),
    (("jobs", "list", "--filter", "metrics.acc > 3"), "no run has metrics.acc",
     ("GET", "/jobs", {"filter": "metrics.acc > 3"}), 422),
    (("jobs", "list", "--sort", "-params.lernin_rate"), "no run has params.lernin_rate",
     ("GET", "/jobs", {"sort": "-params.lernin_rate"}), 422),
    (("jobs", "list", "--filter", "metrics.accuracy >> 3"), ">> is no operator",
     ("GET", "/jobs", {"filter": "metrics.accuracy >> 3"}), 422),
]
