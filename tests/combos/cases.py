"""The combinations tier's cases: model sources x consumers x brokers x artifact stores x databases, reduced to
all pairs (each pair of values meets in at least one case). Environments are six fixed rows that pair every
broker, store and database; cases are chosen greedily, each covering the most pairs still missing. By hand: a
covering generator of twenty lines against a dependency for it (allpairspy). A study trains the model its folder
is classified with, so "study folder" meets only the "trained" source (the pairs it cannot form are not asked).

`python tests/combos/cases.py` prints the matrix docs/getting-started.md shows.
"""

from __future__ import annotations

from itertools import combinations, product
from typing import NamedTuple

SOURCES = ("trained", "imported .keras", "imported SavedModel", "sweep best", "registry alias")
CONSUMERS = ("classify", "classify --gradcam", "layers", "study folder", "/predict", "export")
# (broker, artifact store, database): every pair of the three meets in one of these.
ENVIRONMENTS = (("embedded Redis", "home", "SQLite"), ("embedded Redis", "database", "PostgreSQL"),
                ("Redis", "home", "PostgreSQL"), ("Redis", "database", "SQLite"),
                ("RabbitMQ", "home", "SQLite"), ("RabbitMQ", "database", "PostgreSQL"))


class Case(NamedTuple):
    source: str
    consumer: str
    broker: str
    store: str
    database: str


def _pairs(case: tuple[str, ...]) -> set[tuple[tuple[int, str], tuple[int, str]]]:
    return set(combinations(enumerate(case), 2))


def possible(case: Case) -> bool:
    return case.consumer != "study folder" or case.source == "trained"


def all_pairs() -> list[Case]:
    candidates = [case for s, c, env in product(SOURCES, CONSUMERS, ENVIRONMENTS) if possible(case := Case(s, c, *env))]
    missing = set().union(*(_pairs(c) for c in candidates))
    chosen: list[Case] = []
    while missing:
        best = max(candidates, key=lambda c: len(_pairs(c) & missing))
        chosen.append(best)
        missing -= _pairs(best)
    return sorted(chosen, key=lambda c: (ENVIRONMENTS.index((c.broker, c.store, c.database)), c.source, c.consumer))


CASES = all_pairs()

if __name__ == "__main__":
    print("| # | model source | consumer | broker | artifact store | database |")
    print("|---|---|---|---|---|---|")
    for i, c in enumerate(CASES, 1):
        print(f"| {i} | {' | '.join(c)} |")
