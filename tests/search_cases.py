"""Expected answers of the runs table's grammar over tests/job_rows.py's runs (a/b/c/d by id)."""

from __future__ import annotations


def ids_of(jobs) -> str:  # noqa: ANN001
    return "".join(j.id[0] for j in jobs)


# (filter, sort, tags, the ids in order); the default order is newest first: d c b a.
CASES = [
    ("metrics.accuracy > 0.5", "-metrics.accuracy", None, "bc"),
    ("params.learning_rate = 0.001", None, None, "b"),
    ("params.learning_rate <= 0.001 and params.epochs = 3", "params.learning_rate", None, "ab"),
    (None, "-metrics.accuracy", ["lr-sweep"], "ba"),
    ("tags = best", None, None, "b"),
    ("tags != lr-sweep", None, None, "dc"),
    ("tags ~ sweep", "name", None, "ba"),
    ("name ~ lr", "-name", None, "ab"),
    ("params.preset = seed", "metrics.accuracy", None, "abd"),  # no figures: last either way
    ("params.preset != fast and status = succeeded", None, None, "ba"),
    ("params.epochs > 5", None, None, "c"),  # "many" is text: never compared with a number
    ("params.epochs = many", None, None, "d"),
    ("metrics.ece < 0.04", None, None, "b"),
    ("kind = train and status = running", None, None, "d"),
    ('name = "mid lr"', None, None, "b"),
    (None, "params.epochs", None, "bacd"),  # numbers first (ties newest first), then the text
]
HOSTILE = [
    "name = '; DROP TABLE jobs; --'",
    "name = x' OR '1'='1",
    "params.x = 1) OR (1=1",
    'metrics.accuracy > 0 OR 1=1',
    "name ~ %",
    "name ~ _",
    "params.a = \\x00",
    "status = succeeded; delete from jobs",
]
WRONG = [
    ("metrics.accuracy >", None, "expected KEY OP VALUE"),
    ("accuracy > 0.5", None, "filter 'accuracy'"),
    ("metrics.accuracy > 0.5 or name = x", None, "expected 'and'"),
    ("tags > x", None, "tags take"),
    (None, "-colour", "sort 'colour'"),
    (None, "tags", "tags cannot be sorted"),
    ("params.a-b = 1", None, "params.a-b"),
]
