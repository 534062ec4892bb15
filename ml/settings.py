"""The one settings object: every CONVLENS_* environment variable, read and validated here and nowhere else.

It lives in the bottom layer because every layer reads it (ml only for the data and home folders).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CONVLENS_", extra="ignore", frozen=True)

    home: Path | None = Field(None, description=(
        "runs, models, plots, overlays, the embedded services (default: the nearest .convlens in this folder or "
        "a parent, as git finds .git; else ./.convlens)"))
    data_dir: Path | None = Field(None, description=(
        "where cifar-10-batches-bin/ lives (default: the one this home last used, else HOME/datasets)"))
    database_url: str | None = Field(None, description="default: SQLite under HOME")
    broker_url: str | None = Field(None, description="default: an embedded Redis on a socket under HOME")
    allowed_roots: str | None = Field(None, description="folders jobs may read, separated by ':'")
    visibility_timeout: int = Field(21600, ge=1, description="seconds before an unacknowledged task returns")
    heartbeat_s: float = Field(10.0, gt=0, description="how often a running job's worker says it is alive")
    stale_after_s: float = Field(45.0, gt=0, description="a running job silent this long is recovered")
    max_attempts: int = Field(3, ge=1, description="times a job whose worker went silent is re-queued")
    decode_megapixels: float = Field(100.0, gt=0, description="megapixels one process decodes at once (memory)")
    task_time_limit: int = Field(86400, ge=60, description="seconds after which a worker abandons a task")
    fair_share: bool = Field(True, description="owners take turns for free worker slots (false: first come, first "
                                               "served, as each message was sent)")
    artifact_store: str = Field("home", pattern=r"^(home|database|[a-z][a-z0-9+.-]*://.+)$", description=(
        "where models, plots and overlays are kept for every machine: home (files under HOME, shared by mount), "
        "database (in the results database) or an fsspec URL (s3://bucket/prefix)"))
    cache: Path | None = Field(None, description="this machine's copies of stored artifacts (default HOME/cache)")
    cache_mb: int = Field(4096, ge=16, description="the cache's size cap in MiB (least recently used go first)")

    @property
    def home_dir(self) -> Path:
        return self.home.expanduser().resolve() if self.home else nearest_home(os.getcwd())

    @property
    def datasets_dir(self) -> Path:
        """CONVLENS_DATA_DIR, else the folder this home remembered (remember_data_dir), else HOME/datasets."""
        if self.data_dir:
            return self.data_dir.expanduser().resolve()
        try:
            remembered = (self.home_dir / REMEMBERED_DATA_DIR).read_text().strip()
        except OSError:
            remembered = ""
        return Path(remembered) if remembered else self.home_dir / "datasets"

    @property
    def cache_dir(self) -> Path:
        return self.cache.expanduser().resolve() if self.cache else self.home_dir / "cache"

    @property
    def embedded_database(self) -> bool:
        return self.database_url is None

    @property
    def embedded_broker(self) -> bool:
        return self.broker_url is None

    @property
    def roots(self) -> list[Path] | None:
        """The allowed roots, or None when unset (HTTP then refuses every folder; the CLI reads any)."""
        if self.allowed_roots is None:
            return None
        return [Path(p).expanduser().resolve() for p in self.allowed_roots.split(os.pathsep) if p.strip()]


HOME_NAME = ".convlens"
REMEMBERED_DATA_DIR = "data-dir"  # a file in the home: the dataset folder its commands found CIFAR-10 in


@lru_cache(maxsize=64)
def nearest_home(cwd: str) -> Path:
    """The .convlens folder in cwd or its nearest parent that has one (as git finds .git), else cwd/.convlens:
    any command run from a project's subfolder uses the project's home instead of making an empty one."""
    here = Path(cwd).resolve()
    for folder in (here, *here.parents):
        if (folder / HOME_NAME).is_dir():
            return folder / HOME_NAME
    return here / HOME_NAME


def remember_data_dir(folder: Path) -> None:
    """Keeps the dataset folder in the home, so every later command there finds it without CONVLENS_DATA_DIR."""
    file = settings().home_dir / REMEMBERED_DATA_DIR
    try:
        if file.parent.is_dir() and (not file.exists() or file.read_text().strip() != str(folder)):
            file.write_text(f"{folder}\n")
    except OSError:  # a read-only home: the setting is only a convenience
        pass


def settings() -> Settings:
    """The settings for the environment as it is now: built again whenever a CONVLENS_* variable changed (tests
    and tools change them between runs), else the same object (building one parses and validates every field,
    and hot paths such as opening each image to classify read it)."""
    return _settings(tuple(os.environ.get(name) for name in _VARIABLES))


_VARIABLES = [f"CONVLENS_{name.upper()}" for name in Settings.model_fields]


@lru_cache(maxsize=8)
def _settings(environment: tuple[str | None, ...]) -> Settings:
    # An empty variable means its default, as it always did.
    return Settings(**{name: field.default for name, field in Settings.model_fields.items()
                       if os.environ.get(f"CONVLENS_{name.upper()}") == ""})

