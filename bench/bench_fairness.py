"""Fair share against first come, first served, side by side, with one worker and a real API:

token A submits a large Grad-CAM classify (N real CIFAR-10 test images in shards); once its first shard has run,
token B submits small jobs (each a one-epoch train on 16 images), one every few seconds. Printed per mode: each of
B's queue waits (created -> started), B's longest, and A's total time (created -> finished), from the jobs' own
timestamps. First come, first served is the worker with CONVLENS_FAIR_SHARE=false (each message runs the unit it
was sent with, as before fair share); both modes run in this one invocation on the same machine, data and model.

    python bench/bench_fairness.py [--images 4000] [--shard 200] [--small 3] [--every 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "fast"))


def cpu() -> str:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    kind = "AVX-512-BF16" if "avx512_bf16" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    model = next((line.split(":", 1)[1].strip() for line in flags.splitlines() if line.startswith("model name")),
                 platform.processor())
    return f"{model}, {os.cpu_count()} cores, {kind}"


def one_mode(base: Path, fair: bool, args: argparse.Namespace) -> dict:
    from convlens.client import Client
    from services import ApiServer, Worker, cli, embedded_env, free_redis_db, release_redis_db, wait_for

    env = embedded_env(base / f"home-{'fair' if fair else 'fifo'}", CONVLENS_BROKER_URL=free_redis_db(),
                       CONVLENS_ALLOWED_ROOTS=str(base), CONVLENS_FAIR_SHARE=str(fair).lower())
    cli(env, "db", "upgrade")
    cli(env, "models", "import", str(base / "tiny.keras"), "--name", "tiny", "--classes", args.classes,
        "--input-scale", "1")
    api, worker = ApiServer(env, base), Worker(env, f"bench-{fair}@convlens-bench", base)
    try:
        worker.wait_ready()
        admin = api.client(api.token)
        keys = {n: admin.post("/tokens", json={"name": n, "scope": "submit"}).json()["token"] for n in ("a", "b")}
        a, b = Client(api.url, keys["a"]), Client(api.url, keys["b"])
        big = a.submit("classify", folder=str(base / "photos"), model="tiny", gradcam=True, shard_size=args.shard)
        wait_for(lambda: any(c.status == "succeeded" for c in a.job(big).children or []), 600, what="A's first shard")
        small = []
        for _ in range(args.small):
            small.append(b.submit("train", dataset=str(base / "small"), epochs=1))
            time.sleep(args.every)
        b_jobs = [b.wait(s, timeout=3600) for s in small]
        done = a.wait(big, timeout=3600)
        assert done.status == "succeeded" and all(j.status == "succeeded" for j in b_jobs), done.error
        shards = a.job(big).children or []
        rows = a.predictions(big)  # every page, as a DataFrame, through the client
        assert len(rows) == args.images, len(rows)
        return {"rows": len(rows), "b_waits": [(j.started_at - j.created_at).total_seconds() for j in b_jobs],
                "b_run": sum((j.finished_at - j.started_at).total_seconds() for j in b_jobs),
                "a_total": (done.finished_at - done.created_at).total_seconds(),
                "a_shards": sum((c.finished_at - c.started_at).total_seconds() for c in shards)}
    finally:
        worker.stop()
        api.stop()
        release_redis_db(env["CONVLENS_BROKER_URL"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=4000)
    parser.add_argument("--shard", type=int, default=200)
    parser.add_argument("--small", type=int, default=3, help="B's jobs")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between B's submits")
    args = parser.parse_args()
    import keras
    from helpers import image_folder
    from PIL import Image

    from convlens.ml.data.cifar import export_test_sample, load_cifar10
    from convlens.ml.settings import settings

    data = load_cifar10(settings().datasets_dir)
    args.classes = ",".join(data.class_names)
    with tempfile.TemporaryDirectory(prefix="bench-fairness-") as tmp:
        base = Path(tmp)
        export_test_sample(data, min(args.images, len(data.y_test)), base / "photos")
        for i in range(len(data.y_test), args.images):  # more than the test set: its images again, under new names
            j = i % len(data.y_test)
            Image.fromarray(data.x_test[j]).save(base / "photos" / data.class_names[data.y_test[j]] / f"again-{i}.png")
        image_folder(base / "small", per_class=8)
        keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(8, 3, activation="relu"),
                          keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10)]).save(base / "tiny.keras")
        results = {mode: one_mode(base, mode == "fair share", args) for mode in ("first come, first served",
                                                                                 "fair share")}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout
    print(f"# bench_fairness: {datetime.now(UTC):%Y-%m-%d}, {cpu()}, convlens {commit.strip()}")
    print(f"# every run checked: A's {args.images} prediction rows read back by convlens.client.Client as a DataFrame")
    print(f"# python bench/bench_fairness.py --images {args.images} --shard {args.shard} --small {args.small} "
          f"--every {args.every:g}; one worker (concurrency 1), embedded SQLite, Redis")
    shards = -(-args.images // args.shard)
    print(f"| scheduling | B's waits, s ({args.small} one-epoch trains) | B's longest wait, s | B's jobs' run, s | "
          f"A's total, s ({args.images} images, Grad-CAM, {shards} shards) | A's shards' run, s |")
    print("|---|---|---|---|---|---|")
    for mode, r in results.items():
        print(f"| {mode} | {', '.join(f'{w:.1f}' for w in r['b_waits'])} | {max(r['b_waits']):.1f} | "
              f"{r['b_run']:.1f} | {r['a_total']:.1f} | {r['a_shards']:.1f} |")


if __name__ == "__main__":
    main()
