import json

import pytest

from core.commands import main


def run_json(capsys, *argv) -> tuple[int, dict]:
    code = main([*argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


@pytest.mark.slow  # trains and converts
def test_tflite_prints_accuracy_size_and_latency_per_file(sparselab_home, capsys):
    code, result = run_json(capsys, "tflite", "--model", "digits-cnn", "--prune", "constant:0.5",
                            "--export", "float,int8", "--epochs", "1", "--threads", "1", "--repeats", "3")
    assert code == 0
    assert set(result["keras_accuracy"]) == {"dense", "constant:0.5"}
    assert [e["name"] for e in result["exports"]] == ["dense/float", "dense/int8", "constant:0.5/float",
                                                      "constant:0.5/int8"]
    for export in result["exports"]:
        assert {"name", "size_bytes", "accuracy", "latency_ms", "threads"} <= set(export)
        assert export["threads"] == 1 and export["latency_ms"] > 0 and 0 < export["accuracy"] <= 1


def test_tflite_refuses_xnnpack_on_the_cnn(sparselab_home, capsys):
    code, result = run_json(capsys, "tflite", "--model", "digits-cnn", "--prune", "xnnpack:0.75")
    assert code == 1 and "XNNPACK latency pruning policy" in result["error"]


@pytest.mark.slow  # trains and converts the tiny CNN
def test_inspect_checks_the_pattern(tiny_cnn, tmp_path, capsys):
    path = tmp_path / "pruned_sparse.tflite"
    path.write_bytes(tiny_cnn.files["sparse"])
    code, result = run_json(capsys, "tflite-inspect", str(path), "--mn", "2:4")
    assert code == 0 and result["mn"] == "2:4"
    assert len(result["mn_holding"]) == 2
    assert [t["stored_sparse"] for t in result["tensors"]] == [True, True, True, False]


def test_inspect_rejects_a_file_that_is_not_tflite(tmp_path, capsys):
    path = tmp_path / "model.tflite"
    path.write_text("definitely not a flatbuffer")
    code, result = run_json(capsys, "tflite-inspect", str(path))
    assert code == 1 and "TFL3" in result["error"]
