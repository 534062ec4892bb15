"""What training picks from the CPU: oneDNN's kernels on every CPU unless the user turns them off, and the one
line `convlens worker`/`run` print naming the precision and the fast preset's widths this CPU gets."""

from __future__ import annotations

import os
import subprocess
import sys

from convlens.ml.hardware import cpu
from convlens.ml.precision import cpu_choice, training_choice

ONEDNN_ON = "oneDNN custom operations are on"  # TensorFlow's own log line when it uses oneDNN's kernels


def _tensorflow_log(**env: str) -> str:
    base = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    proc = subprocess.run([sys.executable, "-c", "import convlens.ml, tensorflow"], capture_output=True, text=True,
                          timeout=120, env={**base, "TF_CPP_MIN_LOG_LEVEL": "0", **env})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stderr


def test_onednn_kernels_are_on_unless_the_user_says_no():
    # TensorFlow alone enables them only on CPUs with AVX-512 VNNI/BF16 or AMX; convlens on AVX2 CPUs too.
    assert ONEDNN_ON in _tensorflow_log()
    assert ONEDNN_ON not in _tensorflow_log(TF_ENABLE_ONEDNN_OPTS="0")


def test_the_training_line_names_what_this_cpu_gets():
    line = training_choice()
    c = cpu()
    assert f"({c.cores} cores)" in line and "oneDNN kernels" in line
    if cpu_choice().policy == "mixed_bfloat16":
        assert c.bf16 and "mixed_bfloat16 because" in line and "conv widths 64/128/256" in line
    else:
        assert "float32 because" in line and "conv widths 32/64/128" in line
    assert "\n" not in line


def test_the_peak_follows_the_units_that_run_the_precision():
    from convlens.ml.hardware import Cpu

    def make(vendor: str, *flags: str) -> Cpu:
        return Cpu(model="x", vendor=vendor, cores=2, mhz=2000.0, flags=flags)

    avx2 = make("AuthenticAMD", "avx2", "fma")
    zen4 = make("AuthenticAMD", "avx2", "fma", "avx512f", "avx512_bf16")
    sapphire = make("GenuineIntel", "avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    assert avx2.peak_gflops("float32") == 2 * 2.0 * 2 * 8 * 2  # 2 FMA units x 8 float32 lanes x 2 flops
    assert zen4.peak_gflops("mixed_bfloat16") == 2 * zen4.peak_gflops("float32") == 2 * 128.0
    assert sapphire.peak_gflops("float32") == 2 * 2.0 * 2 * 16 * 2  # 512-bit lanes on Intel
    assert sapphire.peak_gflops("mixed_bfloat16") == 2 * 2.0 * 1024  # AMX tiles
    assert "AMX" in sapphire.peak_rule("mixed_bfloat16") and "AMX" not in zen4.peak_rule("mixed_bfloat16")
