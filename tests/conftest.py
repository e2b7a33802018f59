"""Every test gets its own SparseLab home (cache, run store, jobs) and works offline."""

import copy
import os

import pytest

import core  # noqa: F401  (process-wide switches first)
from core.model_source import resolve

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Shared fixtures (tiny_cnn, module_cache) for every test module, without per-module imports.
pytest_plugins = ["tests.fixtures_keras", "tests.fixtures_tvm", "tests.fixtures_pruning"]


@pytest.fixture(autouse=True)
def sparselab_home(tmp_path, monkeypatch):
    home = tmp_path / "sparselab-home"
    monkeypatch.setenv("SPARSELAB_HOME", str(home))
    for name in ("SPARSELAB_CACHE_DIR", "SPARSELAB_STORE", "SPARSELAB_JOBS_DIR", "SPARSELAB_CACHE_CAP_BYTES",
                 "SPARSELAB_LIBRARY", "SPARSELAB_SCHEDULER", "SPARSELAB_READ_ONLY"):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture(scope="session")
def _tiny_dense():
    return resolve("bert-tiny").load_model()


@pytest.fixture
def tiny_model(_tiny_dense):
    """A fresh bert-tiny (2 layers, hidden 128, seeded weights) that a test may prune."""
    return copy.deepcopy(_tiny_dense)
