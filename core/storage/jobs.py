"""The Store page's background jobs: save + analyse a model, and verify an uploaded file."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

from core.artifact_cache import ArtifactSpec, default_cache
from core.errors import SparseLabError
from core.jobs import NO_PROGRESS, Progress, stage
from core.library.store import default_library
from core.model_source import resolve
from core.run_store import RunRecord, default_store
from core.settings import Settings
from core.storage.report import storage_report
from core.storage.request import StoreRequest
from core.storage.store import store_model, verify_file

FILE_NAME = "model.h5"
RESULT_FILE = "result.json"  # the save's StoreResult, so a cache hit reports the same fields


def store_job(params: dict, progress: Progress = NO_PROGRESS) -> dict:
    """Quantize, save, reload bit-exact (cached), then the storage report; params: ``StoreRequest.from_params``."""
    request = StoreRequest.from_params(params)
    source, config = resolve(request.model), request.config
    progress(0.02, "quantizing and saving")
    spec = ArtifactSpec("stored-model", {"source": source.fingerprint(), "config": config.__dict__,
                                         "files": [FILE_NAME, RESULT_FILE]}, libraries=("torch", "h5py"))

    def build(folder: Path) -> None:
        result = store_model(source, config, folder / FILE_NAME).as_dict()
        (folder / RESULT_FILE).write_text(json.dumps(result))

    cache = default_cache()
    folder, hit = cache.get_or_build(spec, build, description=f"{source.name} as {config.format}")
    result_dict = {**json.loads((folder / RESULT_FILE).read_text()), "path": str(folder / FILE_NAME)}
    if hit:  # a cached file is verified again rather than trusted; a damaged one is replaced, once
        try:
            verified = verify_file(folder / FILE_NAME, source)
            damage = None if verified["bit_exact"] else "its reload is no longer bit-exact"
        except SparseLabError as exc:
            damage = str(exc)
        if damage is None:
            result_dict.update(bit_exact=verified["bit_exact"], load_s=verified["load_s"],
                               size_bytes=verified["size_bytes"])
        else:
            cache.remove(spec.key)
            folder, hit = cache.get_or_build(spec, build, description=f"{source.name} as {config.format}")
            result_dict = {**json.loads((folder / RESULT_FILE).read_text()), "path": str(folder / FILE_NAME),
                           "rebuilt_because": f"the cached file was damaged: {damage}"}
    entry = default_library().add(folder / FILE_NAME, kind="quantized", parent=source.name,
                                  base_name=f"{source.name} int8 {config.format}", origin=f"artifact:{spec.key}",
                                  details={"format": config.format, "method": config.method,
                                           "embeddings": config.embeddings, "size_bytes": result_dict["size_bytes"]})
    result_dict["library_name"] = entry.name
    report = storage_report(source, config, threads=request.threads,
                            progress=stage(progress, 0.3, 1.0))
    waterfall = report["waterfalls"][config.embeddings if config.embeddings != "none" else "none"]
    default_store().add(RunRecord(
        kind="store", model=source.name, method=config.method,
        size_bytes=result_dict["size_bytes"], accuracy=report["fidelity"]["vs_pruned_fp32"]["mean_cosine"],
        latency_ms=report["latency"]["int8"]["median_ms"], latency_std_ms=report["latency"]["int8"]["std_ms"],
        threads=report["latency"]["int8"]["threads"],
        settings={**config.__dict__}, metrics={**result_dict, "waterfall": waterfall, "fidelity": report["fidelity"],
                                               "fp32_latency_ms": report["latency"]["fp32"]["median_ms"]}))
    return {"stored": result_dict, "cache_hit": hit, **report}


def uploads_dir() -> Path:
    return Settings.from_env().jobs_dir / "uploads"


def save_upload(data: bytes, name: str) -> Path:
    """Keep an uploaded file where ``store_verify_job`` can read it (and delete it afterwards)."""
    folder = uploads_dir() / uuid.uuid4().hex
    folder.mkdir(parents=True)
    path = folder / Path(name).name
    path.write_bytes(data)
    return path


def store_verify_job(params: dict, progress: Progress = NO_PROGRESS) -> dict:
    """params: path (from ``save_upload``), model. The upload is deleted afterwards."""
    path = Path(params["path"])
    try:
        progress(0.1, "reloading and comparing outputs")
        return verify_file(path, resolve(params["model"]))
    finally:
        if uploads_dir() in path.parents:
            shutil.rmtree(path.parent, ignore_errors=True)
