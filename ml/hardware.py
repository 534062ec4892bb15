"""What this CPU can do: its cores, clock and vector units, the peak rate they allow in each precision (what
benchmarks compare achieved GFLOP/s against), and the work a model costs per image.

The peak is computed, not measured (no library reports it): cores x clock x FMA units x float32 lanes x 2 flops
per FMA. Two FMA units per core (every x86 server core since Haswell and Zen); 512-bit lanes on Intel cores
with AVX-512, 256-bit on AMD's (Zen 4 runs AVX-512 as two 256-bit halves); bf16 (VDPBF16PS: two bf16 products
into each float32 lane) doubles it. Where the CPU has AMX (Intel Sapphire Rapids and later), oneDNN runs bf16
convolutions and matmuls on its tile unit instead: 1,024 bf16 flops per cycle per core (Intel's figure for TMUL).
"""

from __future__ import annotations

import json
import math
import os
import platform
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

# The CPU flags that decide how fast (and in which precision) training runs.
FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


@dataclass(frozen=True)
class Cpu:
    model: str
    vendor: str
    cores: int  # the cores this process may run on
    mhz: float
    flags: tuple[str, ...]  # which of FLAGS it has

    @property
    def bf16(self) -> bool:
        """Whether it has bf16 instructions (AVX-512-BF16 or AMX); ml.precision measures whether they pay."""
        return bool({"avx512_bf16", "amx_bf16"} & set(self.flags))

    @property
    def vector_bits(self) -> int:
        if "avx512f" in self.flags and self.vendor == "GenuineIntel":
            return 512
        return 256 if "avx2" in self.flags else 128

    def _per_cycle(self, policy: str) -> tuple[int, str]:
        """Flops per cycle per core in a Keras precision policy, and how they are counted."""
        if policy == "mixed_bfloat16" and "amx_bf16" in self.flags:
            return 1024, "1,024 bf16 flops per cycle (AMX tiles)"
        pairs = 2 if policy == "mixed_bfloat16" and self.bf16 else 1
        lanes = self.vector_bits // 32
        return 2 * lanes * 2 * pairs, (f"2 FMA units x {lanes} float32 lanes x 2 flops"
                                       f"{' x 2 (bf16 pairs)' if pairs == 2 else ''}")

    def peak_gflops(self, policy: str) -> float:
        """The peak for a Keras precision policy ("float32", "mixed_bfloat16")."""
        return self.cores * self.mhz / 1000 * self._per_cycle(policy)[0]

    def peak_rule(self, policy: str) -> str:
        return f"{self.cores} cores x {self.mhz / 1000:.2f} GHz x {self._per_cycle(policy)[1]}"


def decode_threads() -> int:
    """Threads decoding images beside the model: one per core (PIL releases the GIL while it decodes), and two
    at least, so one decodes while the other hands a batch over."""
    return max(2, cpu().cores)


BF16_GAIN = 1.2  # bf16 must train this much faster than float32 to be worth its coarser arithmetic


def package_version(*names: str) -> str | None:
    """The installed version of the first of `names` (a package's alternative distributions) that is installed."""
    from importlib.metadata import PackageNotFoundError, version

    for name in names:
        try:
            return version(name)
        except PackageNotFoundError:
            continue
    return None


def tensorflow_version() -> str | None:
    """TensorFlow's version, whichever of its distributions (the CPU-only one or the full one) is installed."""
    return package_version("tensorflow-cpu", "tensorflow")


def machine_key() -> str:
    """What ml.precision's bf16 probe depends on: the CPU as this process sees it, TensorFlow and its kernels."""
    c = cpu()
    return "|".join([c.model, ",".join(c.flags), str(c.cores), tensorflow_version() or "unknown",
                     "onednn" if os.environ.get("TF_ENABLE_ONEDNN_OPTS") != "0" else "eigen"])


def probe_cache() -> Path:
    """Where the probe's figures are kept: this user's cache folder (the XDG convention), not a convlens home."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "convlens" / "precision.json"


def measured_gains() -> dict[str, float]:
    """The probe's figures by machine_key (float32 time / bf16 time); a damaged entry is left out, to measure again."""
    try:
        known = json.loads(probe_cache().read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(known, dict):
        return {}
    return {k: v for k, v in known.items() if isinstance(v, int | float) and v > 0}


def known_policy() -> str | None:
    """The CPU's training precision without loading TensorFlow: float32 without bf16 instructions, else what the
    probe measured here; None where it has not run yet."""
    if not cpu().bf16:
        return "float32"
    gain = measured_gains().get(machine_key())
    return None if gain is None else policy_for(gain)


def policy_for(gain: float) -> str:
    """The training precision of a CPU with bf16 instructions whose probe measured `gain` (float32 time / bf16 time)."""
    return "mixed_bfloat16" if gain >= BF16_GAIN else "float32"


@lru_cache(maxsize=1)
def cpu() -> Cpu:
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        info = ""

    def field(name: str, default: str) -> str:
        return next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith(name)), default)

    flags = set(field("flags", "").split())
    return Cpu(model=field("model name", platform.processor() or platform.machine()),
               vendor=field("vendor_id", ""), cores=len(os.sched_getaffinity(0)),
               mhz=float(field("cpu MHz", "0") or 0), flags=tuple(f for f in FLAGS if f in flags))


def forward_flops(model) -> int:
    """Floating-point operations of one image's forward pass through the model's convolutions and dense layers
    (2 per multiply-add: each kernel weight once per output position; they are all but a fraction of a percent of
    a CNN's work). A training step costs about three times this per image: the forward and two backward products."""
    total = 0
    for layer in _layers(model):
        if type(layer).__name__ not in ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Dense"):
            continue
        out = layer.output.shape
        positions = int(out[1]) * int(out[2]) if len(out) == 4 else 1
        total += sum(2 * positions * math.prod(w.shape) for w in layer.weights if "kernel" in w.path)
    return total


def _layers(model):
    for layer in model.layers:
        if hasattr(layer, "layers"):  # a nested model or block
            yield from _layers(layer)
        else:
            yield layer
