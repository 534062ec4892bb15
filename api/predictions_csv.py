"""The one CSV form of a classify job's rows: the CLI's `--csv`, the HTTP download and the dashboard's link."""

from __future__ import annotations

import csv
import io

from convlens.db.rows import PredictionRow

COLUMNS = ["path", "predicted", "confidence", "decision", "true_label", "set_size", "prediction_set", "top_k",
           "overlay", "error"]


def record(r: PredictionRow) -> dict[str, object]:
    """The row's cells by column: what the CSV and the CLI's tables show."""
    return dict(zip(COLUMNS, _cells(r), strict=True))


def _cells(r: PredictionRow) -> list[object]:
    return [r.path, r.predicted, r.confidence, r.decision, r.true_label, r.set_size,
            " ".join(r.prediction_set or []), " ".join(f"{c}:{p:.4f}" for c, p in r.top_k or []), r.overlay,
            r.error]


def csv_text(rows: list[PredictionRow], header: bool = True) -> str:
    """Rows as CSV lines (None as an empty cell, lists space-separated), the header first when asked."""
    buffer = io.StringIO()
    out = csv.writer(buffer)
    if header:
        out.writerow(COLUMNS)
    out.writerows(_cells(r) for r in rows)
    return buffer.getvalue()
