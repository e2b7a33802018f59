"""The Prune page's background jobs: ``prune`` (one pruning, kept in the artifact cache) and ``prune_sweep``."""

from __future__ import annotations

import json

from core.artifact_cache import ArtifactSpec, default_cache
from core.jobs import NO_PROGRESS, Progress
from core.library.store import default_library
from core.model_source import resolve
from core.pruning.block import format_block
from core.pruning.request import PruneRequest, SweepRequest
from core.pruning.save import SUMMARY_FILE
from core.pruning.session import prune_and_measure
from core.pruning.sweep import run_sweep


def prune_job(params: dict, progress: Progress = NO_PROGRESS) -> dict:
    """Prune, score, record, and keep the pruned model in the artifact cache.

    params: ``PruneRequest.from_params``. The result names the cached folder, a model source every page and
    command accepts.
    """
    request = PruneRequest.from_params(params)
    config = request.config
    source = resolve(request.model)
    spec = ArtifactSpec("pruned-model", {"source": source.fingerprint(), "task": request.task,
                                         "config": config.as_dict()}, libraries=("torch", "transformers"))
    progress(0.05, f"loading {request.model}")
    summary: dict = {}

    def build(folder) -> None:
        progress(0.2, f"pruning: {config.label} at {config.target_sparsity:g}")
        summary.update(prune_and_measure(request.model, config, request.task, score=True,
                                         save=str(folder / "model")))

    folder, hit = default_cache().get_or_build(spec, build, description=f"{source.name} pruned: {config.label} "
                                                                           f"{config.target_sparsity:g}")
    if hit:  # the model is cached; its pruning summary says what it measured
        summary = json.loads((folder / "model" / SUMMARY_FILE).read_text())
    fidelity = summary.get("fidelity") or {}
    entry = default_library().add(  # once per pruned artifact: the library keeps its own copy under a name
        folder / "model", kind="pruned", base_name=f"{source.name} {config.label} {config.target_sparsity:g}",
        parent=source.name, origin=f"artifact:{spec.key}",
        details={"method": config.method, "label": config.label, "sparsity": summary.get("sparsity"),
                 "mean_cosine": fidelity.get("mean_cosine")})
    return {**summary, "folder": str(folder / "model"), "cache_hit": hit, "block": format_block(config.block),
            "library_name": entry.name}


def prune_sweep_job(params: dict, progress: Progress = NO_PROGRESS) -> dict:
    """Fidelity vs sparsity; params: ``SweepRequest.from_params`` (all optional)."""
    request = SweepRequest.from_params(params)
    return run_sweep(request.model, request.methods, request.sparsities, request.task, request.options, progress)


def sensitivity_job(params: dict, progress: Progress = NO_PROGRESS) -> dict:
    """Each selected Linear layer's fidelity drop when only it is pruned.

    params: ``model``, ``task``, ``sparsities`` (default 0.5, 0.9) and PruneConfig params (``method``, default
    magnitude; ``block``, ``mn``, ``patterns``, ``exclude``...). Returns ``layers``: ``[{name, sparsity,
    fidelity_drop, ...}]``.
    """
    from core.pruning.request import _task
    from core.pruning.sensitivity import SPARSITIES, layer_sensitivity
    from core.pruning.session import DEFAULT_MODEL

    model = params.get("model") or DEFAULT_MODEL
    task = _task(params)
    sparsities = [float(s) for s in (params.get("sparsities") or SPARSITIES)]
    config_params = {k: v for k, v in params.items() if k not in ("model", "task", "sparsities", "sparsity")}
    layers = layer_sensitivity(model, sparsities, config_params, task, progress)
    return {"model": model, "task": task, "method": config_params.get("method") or "magnitude",
            "sparsities": sparsities, "layers": layers}
