import pytest

from core.errors import SparseLabError
from core.jobs import JOB_FUNCTIONS, resolve_function
from core.pruning.jobs import prune_sweep_job
from core.pruning.sweep import recorded_curves, sweep_configs
from core.run_store import default_store


def test_m_by_n_is_one_point_and_other_methods_one_per_sparsity():
    configs = sweep_configs(["magnitude", "block:16x1", "mn:2:4"], [0.0, 0.5, 0.9])
    assert [(c.label, c.target_sparsity) for c in configs] == [
        ("magnitude", 0.0), ("magnitude", 0.5), ("magnitude", 0.9),
        ("block 16x1", 0.0), ("block 16x1", 0.5), ("block 16x1", 0.9), ("2:4", 0.5)]


def test_sweep_job_records_every_point_with_progress():
    assert resolve_function("prune_sweep") is prune_sweep_job and "prune_sweep" in JOB_FUNCTIONS
    reports = []
    result = prune_sweep_job({"model": "bert-tiny", "methods": ["magnitude", "mn:2:4"], "sparsities": [0.0, 0.5]},
                       lambda fraction, message: reports.append((fraction, message)))
    points = result["points"]
    assert [(p["label"], p["target_sparsity"]) for p in points] == [("magnitude", 0.0), ("magnitude", 0.5),
                                                                   ("2:4", 0.5)]
    assert points[0]["mean_cosine"] == pytest.approx(1.0, abs=1e-5) and points[1]["mean_cosine"] < 1.0
    assert reports[-1][0] == 1.0 and [f for f, _ in reports] == sorted(f for f, _ in reports)
    records = sorted(default_store().query(kind="prune"), key=lambda r: r.id)
    assert [r.id for r in records] == [p["run_id"] for p in points]
    two_four = records[-1]
    assert (two_four.model, two_four.method, two_four.sparsity, two_four.block) == ("bert-tiny", "mn", 0.5, "2:4")
    assert two_four.accuracy == points[-1]["retrieval_accuracy"]
    assert two_four.settings["sweep"] == result["sweep_id"]
    assert {"mean_cosine", "min_cosine", "retrieval_accuracy", "achieved_sparsity"} <= set(two_four.metrics)

    again = prune_sweep_job({"model": "bert-tiny", "methods": ["magnitude"], "sparsities": [0.5]}, lambda f, m: None)
    curves = recorded_curves(default_store(), "bert-tiny")
    assert {label: [p["sparsity"] for p in points] for label, points in curves.items()} == {
        "magnitude": [0.0, 0.5], "2:4": [0.5]}
    assert curves["magnitude"][1]["run_id"] == again["points"][0]["run_id"]  # the newest point wins


def test_a_bad_point_refuses_the_whole_sweep_before_recording():
    with pytest.raises(SparseLabError, match="does not divide"):
        prune_sweep_job({"model": "bert-tiny", "methods": ["magnitude", "block:5x1"], "sparsities": [0.5]},
                  lambda fraction, message: None)
    assert default_store().count() == 0
