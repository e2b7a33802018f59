import json
import subprocess
import sys
from pathlib import Path

import pytest

from core.run_store import RunRecord, default_store

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args):
    proc = subprocess.run([sys.executable, "-m", "core", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.slow  # a fresh CLI process
def test_env_json_has_versions_and_paths(sparselab_home):
    code, out, _ = run_cli("env", "--json")
    assert code == 0
    data = json.loads(out)
    for library in ("apache-tvm", "tensorflow", "torch"):
        assert data["libraries"][library]
    assert data["cpu"]["cores"] >= 1
    assert data["store_path"].startswith(str(sparselab_home))


@pytest.mark.slow  # fresh CLI processes
def test_runs_list_and_export(sparselab_home, tmp_path):
    default_store().add(RunRecord(kind="tvm", model="bert-tiny", latency_ms=3.0))
    code, out, _ = run_cli("runs", "list", "--json")
    assert code == 0 and json.loads(out)["runs"][0]["model"] == "bert-tiny"
    target = tmp_path / "runs.csv"
    code, out, _ = run_cli("runs", "export", "--format", "csv", "--out", str(target), "--json")
    assert code == 0 and json.loads(out)["exported"] == 1
    assert "bert-tiny" in target.read_text()


def test_failure_is_json_error_and_nonzero(sparselab_home, tmp_path):
    code, out, err = run_cli("runs", "export", "--out", str(tmp_path / "missing-dir" / "x.csv"), "--json")
    assert code != 0
    assert "error" in json.loads(out)
    assert out.count("\n") == 1  # one JSON object, nothing else on stdout
