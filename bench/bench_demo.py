"""`make demo`'s command as a newcomer runs it: `convlens demo` in a fresh home with nothing configured (a SQLite
file and the embedded Redis), timed from the command's start to its exit, with the figures it prints.
Writes docs/results/demo-CPUKIND.md (bench/_report.py).
Usage: python bench/bench_demo.py [--runs 1]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import Table, write  # noqa: E402

FIGURES = {  # what the demo prints, and the column each figure goes in
    "test accuracy": re.compile(r"^test accuracy ([0-9.]+), .* in ([0-9.]+) s \((\S+)\)", re.M),
    "classified": re.compile(r"^accuracy on those (\d+) labelled images ([0-9.]+)", re.M),
}


def run_once() -> list[str]:
    home = Path(tempfile.mkdtemp(prefix="bench-demo-"))
    env = {k: v for k, v in os.environ.items()
           if k not in ("CONVLENS_DATABASE_URL", "CONVLENS_BROKER_URL", "CONVLENS_ARTIFACT_STORE")}
    env["CONVLENS_HOME"] = str(home / ".convlens")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "convlens.api.cli", "demo"], env=env, cwd=home,
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"the demo failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    train, cls = FIGURES["test accuracy"].search(proc.stdout), FIGURES["classified"].search(proc.stdout)
    row = [f"{wall:.0f}", train.group(1), f"{float(train.group(2)):.0f}", train.group(3),
           f"{cls.group(2)} on {cls.group(1)}"]
    print(f"demo: {wall:.0f} s; test accuracy {row[1]} (training {row[2]} s, {row[3]}); classified {row[4]}",
          flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    rows = [[f"run {i + 1}", *run_once()] for i in range(args.runs)]
    walls = [float(r[1]) for r in rows]
    write(Table(name="demo", title="`make demo` (convlens demo) from a fresh home",
                headline=f"`convlens demo` took {min(walls):.0f}" + (f"-{max(walls):.0f}" if len(walls) > 1 else "")
                + f" s from start to exit, test accuracy {rows[0][2]} (single pass)",
                columns=["run", "wall s", "test accuracy", "training s", "precision",
                         "accuracy of the classified images"],
                rows=rows, notes="Nothing configured: a SQLite file and the embedded Redis, its own worker; "
                                 "CIFAR-10 read from CONVLENS_DATA_DIR. `make install` is not included."))


if __name__ == "__main__":
    main()
