"""A sweep's search space: `NAME=SPEC` options as Optuna distributions, each bound checked by the training
options' own field rules (so a space can never propose a value a train job would refuse).

SPEC: `log:LOW:HIGH` (log-uniform float), `uniform:LOW:HIGH`, `int:LOW:HIGH`, `choice:A,B,C`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from convlens.ml.config import TrainOptions

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

# Training options a sweep may search. The others would change what is measured (dataset, limit, validation
# split, epochs, which the pruner budgets, seed) or only how it runs (precision, time budget).
SEARCHABLE = ("learning_rate", "batch_size", "schedule", "patience", "augment", "flip", "rotation", "zoom",
              "translation", "class_weight", "preset")
SPEC_HELP = "log:LOW:HIGH, uniform:LOW:HIGH, int:LOW:HIGH or choice:A,B,C"


class SpaceError(ValueError):
    """One `NAME=SPEC` that cannot be searched; the message says why."""


def _literal(text: str) -> Any:
    """A choice as the value it spells: an int, a float, true/false, or the text itself."""
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def _checked(name: str, value: Any) -> Any:
    """value as the training options store it; SpaceError naming the field's own rule when they refuse it."""
    try:
        return getattr(TrainOptions.model_validate({name: value}), name)
    except ValidationError as exc:
        raise SpaceError(f"{name}={value!r}: {exc.errors()[0]['msg']}") from None


def _whole(name: str) -> bool:
    """Whether the option takes whole numbers only."""
    try:
        TrainOptions.model_validate({name: 0.5})
    except ValidationError as exc:
        return exc.errors()[0]["type"].startswith("int")
    return False


def parse_dimension(text: str) -> tuple[str, BaseDistribution]:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    name, eq, spec = text.partition("=")
    name = name.strip()
    if not eq or not spec:
        raise SpaceError(f"{text!r}: expected NAME=SPEC, SPEC one of {SPEC_HELP}")
    if name not in SEARCHABLE:
        raise SpaceError(f"{name!r} cannot be searched; searchable: {', '.join(SEARCHABLE)}")
    how, _, rest = spec.partition(":")
    if how == "choice":
        values = [_checked(name, _literal(v.strip())) for v in rest.split(",") if v.strip()]
        if len(values) < 2 or len(set(values)) != len(values):
            raise SpaceError(f"{name}={spec}: a choice needs at least two different values")
        return name, CategoricalDistribution(values)
    bounds = rest.split(":")
    if how not in ("log", "uniform", "int") or len(bounds) != 2:
        raise SpaceError(f"{name}={spec}: SPEC is one of {SPEC_HELP}")
    try:
        low, high = (int(b) if how == "int" else float(b) for b in bounds)
    except ValueError:
        raise SpaceError(f"{name}={spec}: the bounds must be {'integers' if how == 'int' else 'numbers'}") from None
    if not low < high:
        raise SpaceError(f"{name}={spec}: LOW must be below HIGH")
    if how == "log" and low <= 0:
        raise SpaceError(f"{name}={spec}: a log scale needs LOW > 0")
    if _whole(name) != (how == "int"):
        use = "int:LOW:HIGH" if _whole(name) else "log:LOW:HIGH or uniform:LOW:HIGH"
        raise SpaceError(f"{name} is {'' if _whole(name) else 'not '}a whole number: use {use} or choice:")
    low, high = _checked(name, low), _checked(name, high)
    if how == "int":
        return name, IntDistribution(low, high)
    return name, FloatDistribution(low, high, log=how == "log")


def distributions(space: list[str]) -> dict[str, BaseDistribution]:
    """The space's distributions by option name (a name given twice is refused)."""
    out: dict[str, BaseDistribution] = {}
    for text in space:
        name, dist = parse_dimension(text)
        if name in out:
            raise SpaceError(f"{name} is given twice")
        out[name] = dist
    if not out:
        raise SpaceError(f"give at least one --space NAME=SPEC ({SPEC_HELP})")
    return out
