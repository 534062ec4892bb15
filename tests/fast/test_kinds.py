"""The job-kind registry, the one definition of the training options, and the settings object."""

from __future__ import annotations

import typing

import pytest
from pydantic import ValidationError

from convlens.ml.config import PresetName, TrainConfig, TrainOptions
from convlens.ml.settings import settings
from convlens.worker.kinds import KINDS, PART_KINDS, UnknownKind, get_kind
from convlens.worker.kinds.kfold import KfoldParams


def test_every_kind_declares_its_shape():
    assert set(KINDS) == {"train", "kfold", "layers", "classify", "study", "sweep", "import"}
    assert set(PART_KINDS) == {"kfold_fold", "classify_shard"}
    for kind in KINDS.values():
        assert kind.params_model.model_config.get("extra") == "forbid", kind.name
        assert kind.params_model.model_config.get("strict"), kind.name
        assert kind.entry_queue == ("cpu" if kind.fans_out or kind.composite else kind.queue)
        assert (kind.part_result_model is not None) == kind.fans_out
        assert not (kind.fans_out and kind.composite)
    assert KINDS["study"].stages and KINDS["study"].template == "_study.html"
    assert KINDS["sweep"].composite and KINDS["sweep"].open_ended and not KINDS["sweep"].fails_with_child
    assert KINDS["study"].fails_with_child and not KINDS["study"].open_ended
    assert [k.name for k in KINDS.values() if not k.over_http] == ["import"]
    assert get_kind("classify_shard") is KINDS["classify"]
    with pytest.raises(UnknownKind, match="known kinds: train, kfold, layers, classify, study, sweep, import"):
        get_kind("paint")


def test_params_are_validated_with_readable_errors():
    for bad in ({"seed": -1}, {"epochs": 0}, {"colour": 1}, {"preset": "nope"}, {"time_budget_s": float("inf")}):
        with pytest.raises(ValidationError):
            TrainOptions.model_validate(bad)
    assert KfoldParams().folds == 5 and set(KfoldParams.model_fields) == set(TrainOptions.model_fields) | {"folds"}


def test_the_preset_names_are_the_registered_presets():
    from convlens.ml.models import list_presets

    assert sorted(typing.get_args(PresetName)) == list_presets()


def test_recipe_layers_defaults_preset_and_run():
    fast = TrainConfig(preset="fast").recipe()
    assert fast["optimizer"] == "sgd" and fast["augment"]["alternate_flip"]
    assert TrainConfig(preset="fast", epochs=3).recipe()["epochs"] == 3
    off = TrainConfig(preset="fast", augment=False).recipe()["augment"]
    assert not off["flip"] and not off["alternate_flip"] and off["translation"] == 0
    one = TrainConfig(translation=0.0).recipe()["augment"]
    assert one["translation"] == 0.0 and one["flip"]  # only the transform named changes


def test_a_presets_small_validation_split_grows_on_a_small_pool():
    from convlens.ml.prepare import validation_fraction

    seed = TrainConfig(preset="seed")
    assert seed.recipe()["val_fraction"] == 0.02
    assert validation_fraction(seed, 50_000) * 50_000 == 1000  # CIFAR-10: the preset's 2%
    assert validation_fraction(seed, 10_000) * 10_000 == 1000  # not 200
    assert validation_fraction(seed, 2000) * 2000 == 200  # a tenth of a small pool
    assert validation_fraction(TrainConfig(preset="seed", val_fraction=0.02), 2000) == 0.02  # the user's, as set
    assert validation_fraction(TrainConfig(preset="seed", val_fraction=0.0), 2000) == 0.0


def test_settings_read_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CONVLENS_HOME", str(tmp_path))
    monkeypatch.setenv("CONVLENS_DATABASE_URL", "")
    monkeypatch.delenv("CONVLENS_DATA_DIR", raising=False)
    monkeypatch.setenv("CONVLENS_ALLOWED_ROOTS", f"{tmp_path}/a:{tmp_path}/b")
    conf = settings()
    assert conf.home_dir == tmp_path and conf.embedded_database and conf.datasets_dir == tmp_path / "datasets"
    assert conf.roots == [tmp_path / "a", tmp_path / "b"]
    monkeypatch.setenv("CONVLENS_VISIBILITY_TIMEOUT", "soon")
    with pytest.raises(ValidationError, match="visibility_timeout"):
        settings()


def test_importing_the_celery_app_starts_nothing(tmp_path):
    import subprocess
    import sys

    code = "import convlens.worker.app, convlens.worker.tasks"
    env = {"CONVLENS_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)
    assert not (tmp_path / "redis.sock").exists() and not (tmp_path / "redis.pid").exists()


def test_a_stage_under_way_says_how_many_of_its_jobs_are_done():
    """A study whose train child succeeded while its k-fold runs said `train and k-fold 0/2` (issue 46)."""
    from convlens.worker.kinds import get_kind
    from convlens.worker.kinds.base import Done

    study = get_kind("study")
    kids = [Done("a" * 32, "train", None, part=0), Done("b" * 32, "kfold", None, status="running", part=0)]
    step = study.next(None, kids)
    assert not step.children and not step.compose
    assert step.progress.stage == "train and k-fold: 1 of 2 jobs done"
    assert step.progress.with_fraction().fraction == 0.25
