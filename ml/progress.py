"""Progress events: what long ml/ work reports while it runs (training steps, probes, classified files)."""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel


class ProgressEvent(BaseModel):
    stage: str | None = None  # train | epoch | evaluate | probe | classify | folds
    epoch: int | None = None
    epochs: int | None = None
    step: int | None = None
    steps: int | None = None
    layer: str | None = None
    done: int | None = None
    total: int | None = None
    fraction: float | None = None  # of the whole unit of work, in [0, 1]
    metrics: dict[str, float] | None = None

    def with_fraction(self) -> ProgressEvent:
        """The event with `fraction` filled in from done/total when it has none, and rounded metrics."""
        update: dict = {}
        if self.fraction is None and self.done is not None and self.total:
            update["fraction"] = round(self.done / self.total, 4)
        if self.metrics:
            update["metrics"] = {k: round(v, 4) for k, v in self.metrics.items()}
        return self.model_copy(update=update)


ProgressFn = Callable[[ProgressEvent], None]


def epoch_figures(event: ProgressEvent) -> dict[str, float] | None:
    """What a job's history keeps of an epoch's end: its number and figures (None for other events)."""
    if event.stage != "epoch" or event.epoch is None:
        return None
    return {"epoch": event.epoch, **{k: round(v, 6) for k, v in (event.metrics or {}).items()}}


def history_columns(epochs: list[dict[str, float]]) -> dict[str, list[float]]:
    """A job's history (one dict per epoch) as Keras' History: one list per figure."""
    keys = dict.fromkeys(k for e in epochs for k in e if k != "epoch")
    return {k: [e.get(k, float("nan")) for e in epochs] for k in keys}
