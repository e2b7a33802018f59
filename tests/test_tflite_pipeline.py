import json

import pytest

from core.artifact_cache import default_cache
from core.errors import SparseLabError
from core.jobs import resolve_function
from core.run_store import default_store
from core.tflite.options import TfliteSettings
from core.tflite.pipeline import run_pipeline

PARAMS = {"model": "digits-cnn", "prune": "mn:2:4", "export": "float,sparse", "epochs": 1, "threads": "1,2",
          "repeats": 3, "warmup": 1}


@pytest.mark.slow  # trains and converts
def test_job_trains_exports_measures_and_records_then_reuses_the_cache(sparselab_home):
    job = resolve_function("tflite")
    seen = []
    result = job(PARAMS, lambda fraction, message: seen.append(fraction))
    json.dumps(result)  # a job result must be JSON
    assert seen == sorted(seen) and seen[-1] == 1.0
    assert set(result["keras_accuracy"]) == {"dense", "mn:2:4"}
    names = [(e["name"], e["threads"]) for e in result["exports"]]
    assert names == [(f"{n}", t) for n in ("dense/float", "mn:2:4/float", "mn:2:4/sparse") for t in (1, 2)]
    sizes = {e["name"]: e["size_bytes"] for e in result["exports"]}
    assert sizes["mn:2:4/sparse"] < sizes["mn:2:4/float"]
    verdict, = result["sparse_verdicts"]
    assert verdict["prune"] == "mn:2:4" and verdict["explanation"]
    assert not any(result["cache_hits"].values())

    records = {(r.method, r.threads): r for r in default_store().query(kind="tflite")}
    assert len(records) == len(names)
    record = records["mn:2:4/sparse", 2]
    assert record.model == "digits-cnn" and record.sparsity == 0.5 and record.size_bytes == sizes["mn:2:4/sparse"]
    assert record.latency_ms > 0 and record.latency_std_ms is not None and record.accuracy > 0
    assert record.metrics["keras_accuracy"] == result["keras_accuracy"]["mn:2:4"]

    again = run_pipeline(TfliteSettings.from_params(PARAMS)).as_dict()
    assert all(again["cache_hits"].values())
    assert again["keras_accuracy"] == result["keras_accuracy"]
    assert {e["name"]: e["size_bytes"] for e in again["exports"]} == sizes


def test_impossible_pruning_fails_before_any_training(sparselab_home):
    with pytest.raises(SparseLabError, match="XNNPACK"):
        run_pipeline(TfliteSettings.from_params({**PARAMS, "prune": "mn:2:4,xnnpack:0.75"}))
    assert default_cache().entries() == []
