"""Where a job's numbers come from: the code's and libraries' versions, the machine, the precision, the seed and
a fingerprint of the data. Nothing here imports TensorFlow (versions come from the installed packages)."""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, Field

from convlens.ml import hardware
from convlens.ml.hardware import FLAGS, package_version
from convlens.ml.settings import settings


class Provenance(BaseModel):
    convlens: str
    commit: str | None = Field(None, description="git commit when run from a checkout")
    python: str
    tensorflow: str | None = None
    keras: str | None = None
    cpu: str
    cpu_flags: list[str] = Field(description=f"which of {', '.join(FLAGS)} the CPU has")
    gpu: str | None = None
    precision_policy: str
    seed: int | None = None
    dataset: str | None = None
    dataset_fingerprint: str | None = Field(None, description="sha256 of the CIFAR-10 files read, or of an image "
                                                              "folder's listing (relative paths, sizes, mtimes)")


@lru_cache(maxsize=1)
def _commit() -> str | None:
    here = Path(__file__).resolve().parent.parent
    if not (here / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


@lru_cache(maxsize=1)
def _gpu() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    names = [line.strip() for line in out.stdout.splitlines() if line.strip()]
    return ", ".join(names) or None


@lru_cache(maxsize=16)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(dataset: str) -> str | None:
    """sha256 over the CIFAR-10 files (their contents), or over an image folder's listing."""
    digest = hashlib.sha256()
    if dataset == "cifar10":
        folder = settings().datasets_dir / "cifar-10-batches-bin"
        files = sorted(folder.glob("*.bin")) if folder.is_dir() else []
        for f in files:
            st = f.stat()
            digest.update(f"{f.name} {_file_digest(str(f), st.st_size, st.st_mtime_ns)}\n".encode())
        return digest.hexdigest() if files else None
    root = Path(dataset)
    if not root.is_dir():
        return None
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        for name in sorted(names):
            path = Path(folder) / name
            try:
                st = path.lstat()
            except OSError:
                continue
            digest.update(f"{path.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8",
                                                                                              "surrogateescape"))
    return digest.hexdigest()


def provenance(seed: int | None = None, dataset: str | None = None, mixed_precision: bool = True,
               with_fingerprint: bool = True) -> Provenance:
    """This process's provenance for a job with that seed and data (the fingerprint costs a listing's stats)."""
    cpu, flags = hardware.cpu().model, hardware.cpu().flags
    gpu = _gpu()
    if not mixed_precision:
        policy = "float32"
    elif gpu:
        policy = "mixed_float16"
    else:
        policy = hardware.known_policy()
        if policy is None and "tensorflow" in sys.modules:  # where TensorFlow is loaded already, measure now
            from convlens.ml.precision import cpu_choice

            policy = cpu_choice().policy
        policy = policy or "not measured yet (mixed_bfloat16 where bf16 is faster, else float32)"
    return Provenance(convlens=package_version("convlens") or "unknown", commit=_commit(),
                      python=platform.python_version(), tensorflow=hardware.tensorflow_version(),
                      keras=package_version("keras"), cpu=cpu, cpu_flags=list(flags), gpu=gpu, precision_policy=policy,
                      seed=seed, dataset=dataset,
                      dataset_fingerprint=fingerprint(dataset) if dataset and with_fingerprint else None)
