"""Where SparseLab keeps its artifacts and measurements.

Every path can be overridden with an environment variable so that a team can
point several dashboards at one shared run store, and tests can use a temp dir.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CACHE_CAP_BYTES = 20 * 1024**3


def _user_cache_home() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")


@dataclass(frozen=True)
class Settings:
    cache_dir: Path
    store_path: Path
    jobs_dir: Path
    cache_cap_bytes: int

    @classmethod
    def from_env(cls) -> Settings:
        home = Path(os.environ.get("SPARSELAB_HOME") or _user_cache_home() / "sparselab")
        return cls(
            cache_dir=Path(os.environ.get("SPARSELAB_CACHE_DIR") or home / "artifacts"),
            store_path=Path(os.environ.get("SPARSELAB_STORE") or home / "runs.sqlite"),
            jobs_dir=Path(os.environ.get("SPARSELAB_JOBS_DIR") or home / "jobs"),
            cache_cap_bytes=int(os.environ.get("SPARSELAB_CACHE_CAP_BYTES") or DEFAULT_CACHE_CAP_BYTES),
        )
