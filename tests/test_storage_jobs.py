import h5py
import pytest

from core.jobs import default_runner
from core.run_store import default_store
from core.storage.jobs import save_upload, uploads_dir


@pytest.mark.slow  # a real store job with its latency and fidelity report
def test_store_job_saves_reports_and_records():
    runner = default_runner()
    params = {"model": "bert-tiny", "format": "sparselab", "embeddings": "none", "threads": 1}
    job = runner.wait(runner.submit("store", params), timeout_s=600)
    assert job.status == "done", job.error
    result = job.result
    assert result["stored"]["bit_exact"] is True and not result["cache_hit"]
    with h5py.File(result["stored"]["path"]) as h5:
        assert h5.attrs["sparselab_format"] == "sparselab"
    labels = [step["label"] for step in result["waterfalls"]["none"]]
    assert labels[0].startswith("fp32") and labels[-1] == "HDF5 gzip, sparselab format"
    assert result["latency"]["int8"]["threads"] == 1
    assert 0 < result["fidelity"]["vs_pruned_fp32"]["mean_cosine"] <= 1
    assert default_store().query(kind="store")[0].size_bytes == result["stored"]["size_bytes"]

    again = runner.wait(runner.submit("store", params), timeout_s=600)
    assert again.result["cache_hit"] is True and again.result["stored"]["bit_exact"] is True
    assert again.result["stored"].keys() == result["stored"].keys()
    assert again.result["stored"]["linear_sparsity"] == result["stored"]["linear_sparsity"]


def test_store_verify_job_rejects_a_bad_upload_and_cleans_up():
    path = save_upload(b"GIF89a not a model", "model.h5")
    runner = default_runner()
    job = runner.wait(runner.submit("store_verify", {"path": str(path), "model": "bert-tiny"}), timeout_s=300)
    assert job.status == "failed" and "not an HDF5 file" in job.error
    assert not path.exists() and list(uploads_dir().iterdir()) == []
