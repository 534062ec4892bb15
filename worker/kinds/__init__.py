"""The job-kind registry: every kind the CLI, the HTTP API, the workers and the queries know of.

Adding a kind: a module beside these with a `JobKind` subclass, listed here, plus its CLI command.
"""

from __future__ import annotations

from convlens.ml.errors import ConvlensError
from convlens.worker.kinds.base import JobKind
from convlens.worker.kinds.classify import Classify
from convlens.worker.kinds.import_model import Import
from convlens.worker.kinds.kfold import Kfold
from convlens.worker.kinds.layers import Layers
from convlens.worker.kinds.study import Study
from convlens.worker.kinds.sweep import Sweep
from convlens.worker.kinds.train import Train

KINDS: dict[str, JobKind] = {k.name: k for k in (Train(), Kfold(), Layers(), Classify(), Study(), Sweep(), Import())}
PART_KINDS: dict[str, JobKind] = {k.part_kind: k for k in KINDS.values() if k.part_kind}


class UnknownKind(ConvlensError, ValueError):
    """A job kind no module registers."""


def get_kind(name: str) -> JobKind:
    """The kind of a job row (a part's row names its parent's kind with a suffix)."""
    kind = KINDS.get(name) or PART_KINDS.get(name)
    if kind is None:
        raise UnknownKind(f"unknown job kind {name!r}; known kinds: {', '.join(KINDS)}")
    return kind


def unit_queue(kind_name: str) -> str:
    """The queue a row of this kind is sent to: a part's, its fan-out kind's work queue; a job's, its entry queue."""
    kind = get_kind(kind_name)
    return kind.queue if kind_name in PART_KINDS else kind.entry_queue
