"""The Store job's cached file is re-verified on a hit, not trusted: a damaged one is found, said, and replaced.

(Beside tests/test_storage_jobs.py, which another change owns; fold in when convenient.)
"""

from pathlib import Path

import h5py
import pytest

from core.errors import SparseLabError
from core.model_source import resolve
from core.run_store import default_store
from core.storage import jobs as storage_jobs
from core.storage.jobs import store_job
from core.storage.store import verify_file

PARAMS = {"model": "bert-tiny", "format": "sparselab", "embeddings": "none", "threads": 1}


def _no_report(source, config, threads, progress=None) -> dict:
    """The storage report's shape without its timings: they are not what this test is about."""
    return {"waterfalls": {"none": []}, "fidelity": {"vs_pruned_fp32": {"mean_cosine": 1.0}},
            "latency": {"int8": {"median_ms": 1.0, "std_ms": 0.0, "threads": threads}, "fp32": {"median_ms": 1.0}}}


def _flip_bytes_inside_the_largest_dataset(path) -> str:
    """XOR 64 bytes in the middle of the first stored chunk of the file's biggest dataset; its name."""
    datasets = []
    with h5py.File(path) as h5:
        h5.visititems(lambda name, obj: datasets.append((obj.id.get_storage_size(), name, obj))
                      if isinstance(obj, h5py.Dataset) else None)
        _, name, dataset = max(datasets, key=lambda d: d[0])
        if dataset.chunks:
            chunk = dataset.id.get_chunk_info(0)
            offset, size = chunk.byte_offset, chunk.size
        else:
            offset, size = dataset.id.get_offset(), dataset.id.get_storage_size()
    data = bytearray(path.read_bytes())
    start = offset + size // 2 - 32
    data[start:start + 64] = bytes(b ^ 0xFF for b in data[start:start + 64])
    path.write_bytes(bytes(data))
    return name


@pytest.mark.slow  # quantizes, saves and reloads a model twice (~30 s)
def test_a_damaged_cached_file_is_found_by_the_next_store_job_and_built_again(monkeypatch):
    monkeypatch.setattr(storage_jobs, "storage_report", _no_report)
    first = store_job(PARAMS)
    assert not first["cache_hit"] and first["stored"]["bit_exact"] is True
    cached = first["stored"]["path"]
    assert "objects" in cached  # the file lives in the artifact cache
    assert default_store().count() == 1

    damaged = _flip_bytes_inside_the_largest_dataset(Path(cached))
    with pytest.raises(SparseLabError, match="stored bytes are damaged") as refused:
        verify_file(Path(cached), resolve("bert-tiny"))  # what the next job's check finds
    assert f"'{damaged}'" in str(refused.value)  # names the table it could not read
    again = store_job(PARAMS)  # a cache hit: the file is read back, found damaged, and built again
    assert not again["cache_hit"] and again["stored"]["bit_exact"] is True
    assert "stored bytes are damaged" in again["stored"]["rebuilt_because"]
    assert verify_file(Path(again["stored"]["path"]), resolve("bert-tiny"))["bit_exact"]
    third = store_job(PARAMS)
    assert third["cache_hit"] and "rebuilt_because" not in third["stored"]  # the good file is kept
    assert default_store().count() == 3
