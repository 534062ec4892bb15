"""The Parquet form of a classify job's rows (`results predictions --parquet`, GET /jobs/{id}/predictions.parquet):
every selected row, keyset page by keyset page, each page one row group, so memory stays one page whatever the
job's size. Columns keep their types (lists stay lists), which pandas, DuckDB and Spark read as they are."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from convlens.api import queries
from convlens.api.schemas import PredictionFilter, parse_cursor
from convlens.db.rows import PredictionRow

PAGE = 20_000  # rows per row group
SCHEMA = pa.schema([("id", pa.int64()), ("path", pa.string()), ("predicted", pa.string()),
                    ("confidence", pa.float64()), ("decision", pa.string()), ("true_label", pa.string()),
                    ("set_size", pa.int32()), ("prediction_set", pa.list_(pa.string())),
                    ("top_k_classes", pa.list_(pa.string())), ("top_k_probabilities", pa.list_(pa.float64())),
                    ("overlay", pa.string()), ("error", pa.string()), ("shard", pa.int32())])


def _table(rows: list[PredictionRow]) -> pa.Table:
    return pa.Table.from_pylist([{
        "id": r.id, "path": r.path, "predicted": r.predicted, "confidence": r.confidence, "decision": r.decision,
        "true_label": r.true_label, "set_size": r.set_size, "prediction_set": r.prediction_set,
        "top_k_classes": [c for c, _ in r.top_k] if r.top_k is not None else None,
        "top_k_probabilities": [p for _, p in r.top_k] if r.top_k is not None else None,
        "overlay": r.overlay, "error": r.error, "shard": r.shard} for r in rows], schema=SCHEMA)


def _pages(job_id: str, filters: PredictionFilter | None) -> Iterator[list[PredictionRow]]:
    after = None
    while True:
        rows = queries.predictions(job_id, filters, limit=PAGE, after=after)
        yield rows
        after = parse_cursor(queries.next_cursor(rows, PAGE))
        if after is None:
            return


def parquet_chunks(job_id: str, filters: PredictionFilter | None = None) -> Iterator[bytes]:
    """The file's bytes as they are written: a row group per page (an empty job gives a valid empty file)."""
    sink = io.BytesIO()
    with pq.ParquetWriter(sink, SCHEMA) as writer:
        for rows in _pages(job_id, filters):
            writer.write_table(_table(rows))
            yield sink.getvalue()
            sink.seek(0)
            sink.truncate()
    yield sink.getvalue()  # the footer


def write_parquet(job_id: str, filters: PredictionFilter | None, path: Path) -> int:
    """Writes the selected rows to `path`; returns how many."""
    with path.open("wb") as out:
        for chunk in parquet_chunks(job_id, filters):
            out.write(chunk)
    return pq.ParquetFile(path).metadata.num_rows
