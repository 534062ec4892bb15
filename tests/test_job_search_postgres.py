"""The runs table's grammar (tests/search_cases.py) on PostgreSQL: the same answers as on SQLite."""

from __future__ import annotations

import os

import pytest

from convlens.api.job_search import JobSearch, SearchError
from convlens.api.queries import list_jobs
from convlens.db.session import upgrade
from job_rows import store_runs
from search_cases import CASES, HOSTILE, ids_of
from services import create_pg_database, drop_pg_database

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def postgres():
    url = create_pg_database()
    saved = os.environ.get("CONVLENS_DATABASE_URL")
    os.environ["CONVLENS_DATABASE_URL"] = url
    try:
        upgrade(url)
        store_runs()
        yield url
    finally:
        os.environ.pop("CONVLENS_DATABASE_URL") if saved is None else os.environ.__setitem__("CONVLENS_DATABASE_URL",
                                                                                              saved)
        drop_pg_database(url)


def test_the_same_answers_as_sqlite(postgres):
    for text, sort, tags, expected in CASES:
        got = ids_of(list_jobs(limit=100, search=JobSearch.parse(text, sort, tags)))
        assert got == expected, (text, sort, tags)
    for text in HOSTILE:
        try:  # refused by the grammar, or by the keys runs have
            found = list_jobs(limit=100, search=JobSearch.parse(text))
        except SearchError:
            continue
        assert ids_of(found) == ""
    assert len(list_jobs(limit=100)) == 4
