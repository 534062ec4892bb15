"""The precision training computes in: bf16 only where the CPU has it and a probe measured it faster than float32,
measured once per machine and kept in the user's cache folder."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from convlens.ml import hardware, precision
from convlens.ml.hardware import Cpu, cpu


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    precision.cpu_choice.cache_clear()
    yield tmp_path / "convlens" / "precision.json"
    precision.cpu_choice.cache_clear()  # the rest of the run sees this machine's own choice


def bf16_cpu(monkeypatch) -> None:
    """Describe this machine as one whose flags offer bf16: what is then chosen follows the probe's figure."""
    monkeypatch.setattr(precision, "cpu", lambda: Cpu(model="a bf16 CPU", vendor="GenuineIntel", cores=2,
                                                      mhz=2000.0, flags=("avx2", "fma", "avx512f", "avx512_bf16")))


@pytest.mark.parametrize(("gain", "policy"), [(0.52, "float32"), (1.19, "float32"), (2.9, "mixed_bfloat16")])
def test_bf16_is_chosen_only_where_it_was_measured_faster(cache, monkeypatch, gain, policy):
    bf16_cpu(monkeypatch)
    cache.parent.mkdir(parents=True)
    cache.write_text(json.dumps({hardware.machine_key(): gain}))
    choice = precision.cpu_choice()
    assert choice.policy == policy
    assert f"{gain:.2f}x as fast as float32" in choice.reason
    assert f"because {choice.reason}" in precision.training_choice()
    assert ("conv widths 64/128/256" if policy == "mixed_bfloat16" else "conv widths 32/64/128") in \
        precision.training_choice()


def test_a_cpu_without_bf16_instructions_trains_in_float32_unmeasured(cache, monkeypatch):
    monkeypatch.setattr(precision, "cpu", lambda: Cpu(model="an AVX2 CPU", vendor="AuthenticAMD", cores=2,
                                                      mhz=2000.0, flags=("avx2", "fma")))
    assert precision.cpu_choice() == precision.PrecisionChoice("float32", precision.NO_BF16)
    assert not cache.exists()


def test_the_probe_runs_once_per_machine_and_leaves_seeded_training_alone(cache):
    cache.parent.mkdir(parents=True)  # another machine's figure sharing the folder, and this one's damaged
    cache.write_text(json.dumps({"another CPU": 2.5, hardware.machine_key(): "fast"}))
    keras.utils.set_random_seed(0)
    before = (keras.random.uniform((4,)).numpy(), tf.random.uniform((4,)).numpy(), np.random.rand(4))
    keras.utils.set_random_seed(0)
    gain = precision.bf16_gain()
    after = (keras.random.uniform((4,)).numpy(), tf.random.uniform((4,)).numpy(), np.random.rand(4))
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)
    assert 0.01 < gain < 100
    stored = json.loads(cache.read_text())
    assert stored == {"another CPU": 2.5, hardware.machine_key(): round(gain, 3)}
    cache.write_text(json.dumps({hardware.machine_key(): 7.0}))  # a second call reads, it does not measure again
    assert precision.bf16_gain() == 7.0
    # Provenance reads the same verdict without TensorFlow (planning steps must not load it).
    assert hardware.known_policy() == precision.cpu_choice().policy == (
        "mixed_bfloat16" if cpu().bf16 else "float32")
