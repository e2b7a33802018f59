"""Fidelity vs sparsity: one curve per pruning method, every point in the run store.

The model is loaded and scored dense once; each point restores the dense
weights, prunes, and scores against the dense answers. m:n fixes its own
sparsity (2:4 is 50%), so an m:n method is one point, not a curve. All points
are built and checked before the first is measured, so a bad request records
nothing.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

from core.jobs import NO_PROGRESS, Progress
from core.pruning.apply import PruneConfig, plan
from core.pruning.methods import get_method
from core.pruning.session import DEFAULT_MODEL, PruneSession
from core.run_store import RunStore, default_store

SPARSITIES = (0.0, 0.3, 0.5, 0.7, 0.9, 0.95)
SPARSITY_CHOICES = (0.0, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98)  # what the page offers; SPARSITIES are preselected
METHOD_SPECS = ("magnitude", "block:16x1", "mn:2:4")
METHOD_SPEC_CHOICES = ("magnitude", "magnitude:global", "wanda", "sparsegpt", "block:16x1", "block:32x1",
                       "block:4x1", "block:16x4", "mn:2:4", "random:16x1")

log = logging.getLogger(__name__)


def sweep_configs(specs: Sequence[str], sparsities: Sequence[float], params: dict | None = None) -> list[PruneConfig]:
    """One validated config per point; ``params`` holds options shared by all (patterns, norm, seed...)."""
    configs = []
    for spec in specs:
        fixed = get_method(spec.partition(":")[0]).sets_own_sparsity
        configs += [PruneConfig.from_spec(spec, {**(params or {}), "sparsity": s})
                    for s in ([None] if fixed else sparsities)]
    return configs


def run_sweep(model_name: str = DEFAULT_MODEL, specs: Sequence[str] = METHOD_SPECS,
              sparsities: Sequence[float] = SPARSITIES, task: str = "base", params: dict | None = None,
              progress: Progress = NO_PROGRESS, store: RunStore | None = None) -> dict:
    """Measure every (method, sparsity) point; returns the sweep id and one dict per point."""
    configs = sweep_configs(specs, sparsities, params)
    progress(0.0, f"loading {model_name}")
    session = PruneSession.open(model_name, task)
    for config in configs:
        plan(session.model, config)
    store = store or default_store()
    sweep_id = uuid.uuid4().hex[:12]
    points = []
    for index, config in enumerate(configs):
        message = f"{config.label} at sparsity {config.target_sparsity:g}"
        progress(index / len(configs), message)
        log.info("%s", message)
        result, scored, seconds = session.prune(config)
        run_id = session.record(store, result, scored, seconds, sweep=sweep_id)
        points.append({"label": config.label, "method": config.method, "pattern": config.pattern,
                       "target_sparsity": config.target_sparsity, "sparsity": result.sparsity,
                       **scored.as_dict(), "run_id": run_id})
    progress(1.0, f"{len(points)} points measured")
    return {"model": session.source.name, "sweep_id": sweep_id, "points": points}


def recorded_curves(store: RunStore, model: str) -> dict[str, list[dict]]:
    """Fidelity curves of ``model`` from the run store: per method label, the newest swept point per sparsity;
    recovered models (distillation) are curves of their own, "<label> recovered"."""
    newest = {}
    for record in store.query(kind="prune", model=model):  # newest first
        if "sweep" in record.settings:
            point = {"sparsity": record.sparsity, **record.metrics, "run_id": record.id}
            newest.setdefault((record.metrics["label"], record.sparsity), point)
    for record in store.query(kind="recover", model=model):  # recovered models: one curve per method label
        point = {"sparsity": record.sparsity, **record.metrics, "run_id": record.id}
        newest.setdefault((f"{record.metrics.get('label', record.method)} recovered", record.sparsity), point)
    curves: dict[str, list[dict]] = {}
    for (label, _), point in sorted(newest.items(), key=lambda item: item[0][1]):
        curves.setdefault(label, []).append(point)
    return curves
