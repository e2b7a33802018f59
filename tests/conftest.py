"""Every test gets its own SparseLab home (cache, run store, jobs) and works offline."""

import os

import pytest

import core  # noqa: F401  (process-wide switches first)

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def sparselab_home(tmp_path, monkeypatch):
    home = tmp_path / "sparselab-home"
    monkeypatch.setenv("SPARSELAB_HOME", str(home))
    for name in ("SPARSELAB_CACHE_DIR", "SPARSELAB_STORE", "SPARSELAB_JOBS_DIR", "SPARSELAB_CACHE_CAP_BYTES"):
        monkeypatch.delenv(name, raising=False)
    return home
