"""The runs table's grammar: `--filter EXPR`, `--sort KEY` and `--columns KEYS` of `jobs list`, the HTTP API's
`filter`/`sort` and the dashboard's controls, turned into SQL on both databases.

EXPR is conditions joined by `and`: KEY OP VALUE, OP one of = != < <= > >= ~ (substring). KEY is `params.NAME`,
`metrics.NAME` (the kind's headline figures: jobs.summary), `name`, `status`, `kind`, `id` or `tags` (`tags = T`:
has tag T; `tags != T`: lacks it; `tags ~ T`: a tag containing T). VALUE is a number, a word, or quoted text.
Everything the user wrote reaches the database as bound parameters, never as SQL text; JSON values are read
with each database's own functions and compared only when their JSON type fits (a number with a number).
Written by hand: MLflow's search grammar is its tracking server's, not a library.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Float, String, and_, exists, literal, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from convlens.db.models import Job, JobTag
from convlens.ml.errors import ConvlensError
from convlens.ml.params import value_problem

Op = Literal["=", "!=", "<", "<=", ">", ">=", "~"]
COLUMNS = {"name": Job.name, "status": Job.status, "kind": Job.kind, "id": Job.id, "created_at": Job.created_at}
_NAME = r"[A-Za-z_][A-Za-z0-9_]{0,63}"
KEY = re.compile(rf"(?:(params|metrics)\.({_NAME})|(name|status|kind|id|tags|created_at))")
_COND = re.compile(r"\s*(?P<key>[A-Za-z_][A-Za-z0-9_.]*)\s*(?P<op>!=|<=|>=|=|<|>|~)\s*"
                   r"""(?P<value>'[^']*'|"[^"]*"|[^\s'"]+)\s*""")
_AND = re.compile(r"and\s+", re.IGNORECASE)
MAX_LENGTH = 1000


class SearchError(ConvlensError):
    """A filter, sort or column the grammar does not have: the message names the part at fault."""


@dataclass(frozen=True)
class Key:
    source: Literal["params", "metrics", "column", "tags"]
    name: str

    def __str__(self) -> str:
        return f"{self.source}.{self.name}" if self.source in ("params", "metrics") else self.name


def search_text_problem(text: str) -> str | None:
    """Why a search text cannot be searched for, or None: a NUL, which PostgreSQL cannot hold in text, and
    control characters, which no stored name or value holds."""
    problem = value_problem(text)
    if problem is None and any(ord(c) < 32 or ord(c) == 127 for c in text):
        problem = "contains a control character"
    return problem


def parse_key(text: str, what: str = "key") -> Key:
    found = KEY.fullmatch(text.strip())
    if found is None:
        raise SearchError(f"{what} {text!r}: use params.NAME, metrics.NAME, name, status, kind, id, tags or "
                          "created_at", field=what)
    if found.group(1):
        return Key(found.group(1), found.group(2))
    return Key("tags" if found.group(3) == "tags" else "column", found.group(3))


@dataclass(frozen=True)
class Condition:
    key: Key
    op: Op
    value: str | float


def parse_filter(text: str | None) -> list[Condition]:
    """The conditions of EXPR, or SearchError naming where it stops making sense."""
    if not text or not text.strip():
        return []
    if len(text) > MAX_LENGTH:
        raise SearchError(f"filter: at most {MAX_LENGTH} characters", field="filter")
    conditions, pos = [], 0
    while True:
        found = _COND.match(text, pos)
        if found is None:
            raise SearchError(f"filter: expected KEY OP VALUE at {text[pos:pos + 30]!r} (OP: = != < <= > >= ~)",
                              field="filter")
        key = parse_key(found.group("key"), "filter")
        raw = found.group("value")
        if raw[0] in "=<>!~":  # `>> 3`, `=< 3`: an operator the grammar does not have
            raise SearchError(f"filter: {found.group('op')}{raw.split()[0]!s:.10} is no operator; OP: = != < <= > >= ~",
                              field="filter")
        value: str | float = raw[1:-1] if raw[0] in "'\"" else _number(raw)
        op = found.group("op")
        if key.source == "tags" and op not in ("=", "!=", "~"):
            raise SearchError(f"filter: tags take =, != or ~, not {op}", field="filter")
        conditions.append(Condition(key, op, value))  # type: ignore[arg-type]
        pos = found.end()
        if pos == len(text):
            return conditions
        joined = _AND.match(text, pos)
        if joined is None:
            raise SearchError(f"filter: expected 'and' at {text[pos:pos + 30]!r}", field="filter")
        pos = joined.end()


def _number(raw: str) -> str | float:
    try:
        value = float(raw)
    except ValueError:
        return raw
    return value if value == value and abs(value) != float("inf") else raw


# --- JSON values, read by each database's own functions -------------------------------------------------

class json_number(FunctionElement):  # noqa: N801 (an SQL function's name)
    """The JSON member as a number, NULL when it is not one."""

    type = Float()
    inherit_cache = True


class json_text(FunctionElement):  # noqa: N801
    """The JSON member as text (true/false for booleans), NULL when absent."""

    type = String()
    inherit_cache = True


@compiles(json_number, "postgresql")
def _pg_number(element, compiler, **kw):  # noqa: ANN001, ANN202
    col, key = (compiler.process(c, **kw) for c in element.clauses)
    return (f"CASE WHEN json_typeof(CAST({col} AS JSON) -> {key}) = 'number' "
            f"THEN CAST(CAST({col} AS JSON) ->> {key} AS DOUBLE PRECISION) END")


@compiles(json_text, "postgresql")
def _pg_text(element, compiler, **kw):  # noqa: ANN001, ANN202
    col, key = (compiler.process(c, **kw) for c in element.clauses)
    return f"(CAST({col} AS JSON) ->> {key})"


@compiles(json_number, "sqlite")
def _sqlite_number(element, compiler, **kw):  # noqa: ANN001, ANN202
    col, key = (compiler.process(c, **kw) for c in element.clauses)
    path = f"'$.\"' || {key} || '\"'"
    return f"CASE WHEN json_type({col}, {path}) IN ('integer', 'real') THEN json_extract({col}, {path}) END"


@compiles(json_text, "sqlite")
def _sqlite_text(element, compiler, **kw):  # noqa: ANN001, ANN202
    col, key = (compiler.process(c, **kw) for c in element.clauses)
    path = f"'$.\"' || {key} || '\"'"
    return (f"CASE json_type({col}, {path}) WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' "
            f"WHEN 'object' THEN NULL WHEN 'array' THEN NULL ELSE CAST(json_extract({col}, {path}) AS TEXT) END")


def _json(key: Key, number: bool) -> ColumnElement[Any]:
    col = Job.params if key.source == "params" else Job.summary
    return (json_number if number else json_text)(col, literal(key.name, String()))


def json_value(key: Key) -> ColumnElement[Any]:
    """A params./metrics. key's value as text in each job row (NULL where the run has none)."""
    return _json(key, number=False)


def sort_expressions(key: Key) -> list[ColumnElement[Any]]:
    """What a column of the runs table sorts by: numbers for metrics, numbers then text for params."""
    if key.source == "metrics":
        return [_json(key, True)]
    if key.source == "params":
        return [_json(key, True), _json(key, False)]
    return [COLUMNS[key.name]]


def condition_sql(c: Condition) -> ColumnElement[bool]:
    if c.key.source == "tags":
        value = str(c.value if isinstance(c.value, str) else _plain(c.value))
        tagged = JobTag.tag.contains(value, autoescape=True) if c.op == "~" else JobTag.tag == value
        has = exists(select(JobTag.job_id).where(JobTag.job_id == Job.id, tagged))
        return ~has if c.op == "!=" else has
    if c.key.source in ("params", "metrics"):
        number = isinstance(c.value, float) and c.op != "~"
        left = _json(c.key, number)
        right: Any = c.value if number else (c.value if isinstance(c.value, str) else _plain(c.value))
    else:
        if c.key.name == "created_at":
            raise SearchError("filter: created_at can be sorted by, not filtered", field="filter")
        left, right = COLUMNS[c.key.name], c.value if isinstance(c.value, str) else _plain(c.value)
    if c.op == "~":
        return left.contains(str(right), autoescape=True)
    return {"=": left == right, "!=": left != right, "<": left < right, "<=": left <= right, ">": left > right,
            ">=": left >= right}[c.op]


def _plain(value: float) -> str:
    return str(int(value)) if value.is_integer() else str(value)


@dataclass(frozen=True)
class JobSearch:
    """A parsed filter, sort and tag list: made once where the request arrives, applied where jobs are read."""

    conditions: tuple[Condition, ...] = ()
    sort: tuple[Key, bool] | None = None  # (key, descending)
    tags: tuple[str, ...] = ()

    @classmethod
    def parse(cls, filter_text: str | None = None, sort: str | None = None,
              tags: list[str] | None = None) -> JobSearch:
        """The search that the API's query and the dashboard's both parse: every text is checked here first
        (a NUL or control character is refused with its field, on either database)."""
        for field, text in (("filter", filter_text), ("sort", sort), *(("tag", t) for t in tags or ())):
            if text is not None and (problem := search_text_problem(text)):
                raise SearchError(f"{field}: {problem}", field=field)
        key = None
        if sort:
            key = (parse_key(sort.strip().removeprefix("-"), "sort"), sort.strip().startswith("-"))
            if key[0].source == "tags":
                raise SearchError("sort: tags cannot be sorted by", field="sort")
        return cls(tuple(parse_filter(filter_text)), key, tuple(tags or ()))

    def keys(self) -> list[tuple[str, Key]]:
        """Every key the search names, with the field that names it (filter or sort)."""
        return [("filter", c.key) for c in self.conditions] + ([("sort", self.sort[0])] if self.sort else [])

    def apply(self, q):  # noqa: ANN001, ANN201
        """The select `q` of jobs, filtered and sorted (newest first after the chosen order)."""
        where = [condition_sql(c) for c in self.conditions]
        where += [exists(select(JobTag.job_id).where(JobTag.job_id == Job.id, JobTag.tag == t)) for t in self.tags]
        if where:
            q = q.where(and_(*where))
        return q

    def order(self) -> list[Any]:
        if self.sort is None:
            return [Job.created_at.desc(), Job.id]
        key, descending = self.sort
        return [*((e.desc() if descending else e.asc()).nulls_last() for e in sort_expressions(key)),
                Job.created_at.desc(), Job.id]


def parse_columns(text: str | None) -> list[Key]:
    if not text:
        return []
    keys = [parse_key(k, "columns") for k in text.split(",") if k.strip()]
    if len(keys) > 20:
        raise SearchError("columns: at most 20", field="columns")
    return keys


def cell(view: Any, key: Key) -> Any:
    """A column's value in a job's view (api.schemas.JobView)."""
    if key.source == "params":
        return view.params.get(key.name)
    if key.source == "metrics":
        return (view.metrics or {}).get(key.name)
    if key.source == "tags":
        return " ".join(view.tags)
    return getattr(view, key.name)
