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
DEFAULT_MAX_UPLOAD_BYTES = 200 * 1024**2  # also .streamlit/config.toml's server.maxUploadSize (MB)
DEFAULT_MAX_QUEUED_PER_SESSION = 4


def _user_cache_home() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")


@dataclass(frozen=True)
class Settings:
    cache_dir: Path
    store_path: Path
    jobs_dir: Path
    cache_cap_bytes: int
    library_dir: Path | None = None  # the model library (uploaded, pruned, recovered, quantized models)
    read_only: bool = False  # SPARSELAB_READ_ONLY=1: browse, compare and download; start no jobs
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_queued_per_session: int = DEFAULT_MAX_QUEUED_PER_SESSION

    @classmethod
    def from_env(cls) -> Settings:
        home = Path(os.environ.get("SPARSELAB_HOME") or _user_cache_home() / "sparselab")
        return cls(
            cache_dir=Path(os.environ.get("SPARSELAB_CACHE_DIR") or home / "artifacts"),
            store_path=Path(os.environ.get("SPARSELAB_STORE") or home / "runs.sqlite"),
            jobs_dir=Path(os.environ.get("SPARSELAB_JOBS_DIR") or home / "jobs"),
            library_dir=Path(os.environ.get("SPARSELAB_LIBRARY") or home / "library"),
            cache_cap_bytes=int(os.environ.get("SPARSELAB_CACHE_CAP_BYTES") or DEFAULT_CACHE_CAP_BYTES),
            read_only=os.environ.get("SPARSELAB_READ_ONLY", "").strip().lower() in ("1", "true", "yes"),
            max_upload_bytes=int(os.environ.get("SPARSELAB_MAX_UPLOAD_BYTES") or DEFAULT_MAX_UPLOAD_BYTES),
            max_queued_per_session=int(os.environ.get("SPARSELAB_MAX_QUEUED_PER_SESSION")
                                       or DEFAULT_MAX_QUEUED_PER_SESSION),
        )

    def check_upload(self, size_bytes: int, what: str = "The file") -> None:
        """Refuse an upload over the cap before anything reads it."""
        from core.errors import SparseLabError

        if size_bytes > self.max_upload_bytes:
            raise SparseLabError(f"{what} is {size_bytes / 2**20:.1f} MB; this server takes at most "
                                 f"{self.max_upload_bytes / 2**20:.0f} MB (SPARSELAB_MAX_UPLOAD_BYTES).")
