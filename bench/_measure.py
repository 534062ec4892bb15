"""Runs a Python snippet in a child process and reports its wall time and peak RSS (from wait4)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time


def run_child(code: str, env: dict | None = None) -> dict:
    """The child prints one JSON line prefixed RESULT:; returns it with wall_s and peak_rss_mb added."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"benchmark child failed:\n{out[-2000:]}")
    line = next(ln for ln in reversed(out.splitlines()) if ln.startswith("RESULT:"))
    result = json.loads(line[len("RESULT:"):])
    result.update(wall_s=round(wall, 1), peak_rss_mb=round(usage.ru_maxrss / 1024))
    return result


def speed(images: float, seconds: float, forward_flops: int, policy: str) -> str:
    """Training images/s and the GFLOP/s they amount to (3 forward passes' worth per image), against this CPU's
    peak for the precision used (ml.hardware says how it is computed)."""
    from convlens.ml.hardware import cpu

    achieved, peak = images * 3 * forward_flops / seconds / 1e9, cpu().peak_gflops(policy)
    return (f"{images / seconds:,.0f} training images/s, {achieved:.1f} GFLOP/s = {achieved / peak:.1%} of the "
            f"{policy} peak {peak:.0f} GFLOP/s ({cpu().peak_rule(policy)})")
