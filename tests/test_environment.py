"""The host facts every measurement and cache key carries."""

import json

import pytest

from core import environment
from core.settings import Settings


@pytest.fixture
def detections(monkeypatch):
    """Counts TVM detections; llvm_mcpu's in-process memo is cleared around the test."""
    calls = []
    monkeypatch.setattr(environment, "_detect_llvm_mcpu", lambda: calls.append(1) or "znver-test")
    environment.llvm_mcpu.cache_clear()
    yield calls
    environment.llvm_mcpu.cache_clear()


def test_mcpu_is_detected_once_per_machine_then_read_without_tvm(detections):
    assert environment.llvm_mcpu() == "znver-test"
    environment.llvm_mcpu.cache_clear()  # a new process
    assert environment.llvm_mcpu() == "znver-test"
    assert len(detections) == 1
    assert list(json.loads((Settings.from_env().cache_dir / "llvm_mcpu.json").read_text()).values()) == ["znver-test"]


def test_another_tvm_version_detects_again(detections, monkeypatch):
    environment.llvm_mcpu()
    environment.llvm_mcpu.cache_clear()
    real = environment.library_version
    monkeypatch.setattr(environment, "library_version", lambda name: "9.9" if name == "apache-tvm" else real(name))
    environment.llvm_mcpu()
    assert len(detections) == 2


def test_a_corrupt_memo_file_is_replaced(detections):
    path = Settings.from_env().cache_dir / "llvm_mcpu.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{not json")
    assert environment.llvm_mcpu() == "znver-test"
    assert "znver-test" in path.read_text()


def test_the_real_detection_names_an_llvm_cpu():
    assert environment._detect_llvm_mcpu() not in ("", "generic")
