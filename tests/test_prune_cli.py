import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.model_source import resolve
from core.run_store import default_store

REPO = Path(__file__).resolve().parent.parent


def prune_cli(home: Path, *args: str):
    env = dict(os.environ, SPARSELAB_HOME=str(home), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "core", "prune", *args, "--json"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    return proc.returncode, json.loads(proc.stdout)


@pytest.mark.slow  # a real pruning job (and fidelity) in a fresh CLI process
def test_prune_prints_layers_sparsity_fidelity_and_saves_a_loadable_model(sparselab_home, tmp_path):
    target = tmp_path / "out" / "pruned"
    code, data = prune_cli(sparselab_home, "--model", "bert-tiny", "--method", "block", "--sparsity", "0.75",
                           "--block", "4x4", "--save", str(target))
    assert code == 0, data
    assert {"layers", "sparsity", "fidelity"} <= set(data)
    assert data["sparsity"] == 0.75
    assert {"mean_cosine", "min_cosine", "retrieval_accuracy"} <= set(data["fidelity"])
    layer = next(l for l in data["layers"] if l["name"] == "encoder.layer.1.output.dense")
    assert layer["shape"] == [128, 512] and layer["sparsity"] == 0.75 and layer["block_sparsity"] == 0.75
    assert not [p for p in target.parent.iterdir() if p.name != "pruned"]  # no temp folder left
    source = resolve(str(target))
    back = source.load_model()
    assert float((back.encoder.layer[1].output.dense.weight == 0).float().mean()) == 0.75
    assert source.load_tokenizer()("sparse")["input_ids"]
    assert json.loads((target / "pruning.json").read_text())["config"]["block"] == "4x4"
    record = default_store().query(kind="prune")[0]
    assert (record.model, record.method, record.block, record.id) == ("bert-tiny", "block", "4x4", data["run_id"])
    assert record.settings["saved"] == str(target)


@pytest.mark.slow  # a fresh CLI process per case (imports torch and transformers)
@pytest.mark.parametrize("args, message", [
    (["--sparsity", "1.0"], "outside [0, 1)"),
    (["--sparsity", "0.5", "--layers", "decoder.*"], "'decoder.*' matches none"),
    (["--method", "block", "--sparsity", "0.5", "--block", "3x1"], "3x1 does not divide layer"),
    (["--method", "mn", "--mn", "4:2"], "impossible"),
])
def test_bad_input_is_a_json_error_and_writes_nothing(sparselab_home, tmp_path, args, message):
    target = tmp_path / "never"
    code, data = prune_cli(sparselab_home, "--model", "bert-tiny", *args, "--save", str(target))
    assert code != 0 and message in data["error"]
    assert [p for p in tmp_path.iterdir() if p != sparselab_home] == []  # no save folder, no temp folder
    assert default_store().count() == 0


def test_existing_save_folder_is_refused(sparselab_home, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    code, data = prune_cli(sparselab_home, "--model", "bert-tiny", "--sparsity", "0.5", "--save",
                           str(tmp_path / "taken"))
    assert code != 0 and "already exists" in data["error"]
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["keep.txt"]


@pytest.mark.slow  # a real pruning job (and fidelity) in a fresh CLI process
def test_sweep_flag_prints_points(sparselab_home):
    code, data = prune_cli(sparselab_home, "--model", "bert-tiny", "--sweep", "--methods", "magnitude",
                           "--sparsities", "0", "0.9")
    assert code == 0
    assert [p["target_sparsity"] for p in data["points"]] == [0.0, 0.9]
    assert data["points"][1]["sparsity"] == pytest.approx(0.9, abs=1e-4)  # each layer rounds to whole weights
    assert data["points"][1]["mean_cosine"] < data["points"][0]["mean_cosine"]
