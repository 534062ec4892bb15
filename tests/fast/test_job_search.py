"""The runs table's filter and sort grammar on SQLite (tests/test_job_search_postgres.py: the same on
PostgreSQL), hostile expressions included: they are parsed, never pasted into SQL."""

from __future__ import annotations

import pytest

from convlens.api.job_search import JobSearch, SearchError, parse_columns
from convlens.api.queries import list_jobs
from convlens.db.session import ensure_current
from job_rows import store_runs
from search_cases import CASES, HOSTILE, WRONG, ids_of


@pytest.fixture(autouse=True)
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVLENS_HOME", str(tmp_path))
    monkeypatch.delenv("CONVLENS_DATABASE_URL", raising=False)
    ensure_current()
    store_runs()


@pytest.mark.parametrize(("text", "sort", "tags", "expected"), CASES, ids=[c[0] or c[1] for c in CASES])
def test_filters_and_sorts(text, sort, tags, expected):
    assert ids_of(list_jobs(limit=100, search=JobSearch.parse(text, sort, tags))) == expected


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_expressions_match_nothing_or_are_refused(text):
    try:  # refused by the grammar, or by the keys runs have (a key no run has is a mistake)
        found = list_jobs(limit=100, search=JobSearch.parse(text))
    except SearchError as exc:
        assert "\n" not in str(exc)
        return
    assert ids_of(found) == ""  # compared as data: no row has such a value
    assert len(list_jobs(limit=100)) == 4  # and nothing was dropped


@pytest.mark.parametrize(("text", "sort", "message"), WRONG)
def test_mistakes_name_the_part_at_fault(text, sort, message):
    with pytest.raises(SearchError, match=message):
        JobSearch.parse(text, sort)


def test_columns():
    assert [str(k) for k in parse_columns("params.learning_rate, metrics.accuracy,name")] == [
        "params.learning_rate", "metrics.accuracy", "name"]
    with pytest.raises(SearchError, match="columns"):
        parse_columns("params.x;drop")
