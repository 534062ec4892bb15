"""Jobs with known params, figures and tags, stored directly: what the filter and sort tests search."""

from __future__ import annotations

from convlens.db.models import Job, JobTag
from convlens.db.session import session_scope

RUNS = [  # (id, name, params, metrics, tags)
    ("a" * 32, "slow lr", {"learning_rate": 0.0001, "epochs": 3, "preset": "seed"}, {"accuracy": 0.41, "ece": 0.05},
     ["lr-sweep"]),
    ("b" * 32, "mid lr", {"learning_rate": 0.001, "epochs": 3, "preset": "seed"}, {"accuracy": 0.62, "ece": 0.03},
     ["lr-sweep", "best"]),
    ("c" * 32, "fast preset", {"learning_rate": 0.01, "epochs": 10, "preset": "fast"}, {"accuracy": 0.55},
     ["other"]),
    ("d" * 32, None, {"preset": "seed", "epochs": "many"}, None, []),  # running: no figures; a text where numbers are
]


def store_runs() -> None:
    with session_scope() as s:
        for i, (job_id, name, params, metrics, tags) in enumerate(RUNS):
            s.add(Job(id=job_id, kind="train", status="succeeded" if metrics else "running", name=name,
                      params=params, summary=metrics, tag_rows=[JobTag(tag=t) for t in tags]))
            s.flush()
            s.get(Job, job_id).created_at = s.get(Job, job_id).created_at.replace(microsecond=i)
