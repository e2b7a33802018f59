"""What the Prune page, the ``prune`` command and their jobs ask for, validated before any work."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.errors import SparseLabError
from core.model_source import TASKS
from core.pruning.apply import PruneConfig
from core.pruning.session import DEFAULT_MODEL
from core.pruning.sweep import METHOD_SPECS, SPARSITIES, sweep_configs

SHARED_OPTIONS = ("patterns", "exclude", "norm", "seed")  # options every point of a sweep shares


def _task(params: dict) -> str:
    task = params.get("task") or "base"
    if task not in TASKS:
        raise SparseLabError(f"Unknown task '{task}'; choose one of {', '.join(TASKS)}.")
    return task


@dataclass(frozen=True)
class PruneRequest:
    """One pruning of ``model`` (a model source name) with its head ``task``."""

    config: PruneConfig
    model: str = DEFAULT_MODEL
    task: str = "base"

    @classmethod
    def from_params(cls, params: dict) -> PruneRequest:
        """``model``, ``task`` and the PruneConfig params (method, sparsity, block, mn, scope, norm, patterns,
        exclude, seed)."""
        return cls(PruneConfig.from_params(params), params.get("model") or DEFAULT_MODEL, _task(params))

    def as_params(self) -> dict:
        return {"model": self.model, "task": self.task, **self.config.as_params()}


@dataclass(frozen=True)
class SweepRequest:
    """Fidelity vs sparsity: every method spec at every sparsity (m:n at its own), sharing ``options``."""

    model: str = DEFAULT_MODEL
    task: str = "base"
    methods: tuple[str, ...] = METHOD_SPECS
    sparsities: tuple[float, ...] = SPARSITIES
    options: dict = field(default_factory=dict)

    @classmethod
    def from_params(cls, params: dict) -> SweepRequest:
        """``model``, ``task``, ``methods`` (specs such as block:16x1), ``sparsities``, and the shared options."""
        options = {key: params[key] for key in SHARED_OPTIONS if params.get(key) is not None}
        request = cls(params.get("model") or DEFAULT_MODEL, _task(params),
                      tuple(params.get("methods") or METHOD_SPECS),
                      tuple(float(s) for s in (params.get("sparsities") or SPARSITIES)), options)
        request.configs()  # every point is valid before anything is measured
        return request

    def configs(self) -> list[PruneConfig]:
        return sweep_configs(self.methods, self.sparsities, self.options)

    def as_params(self) -> dict:
        return {"model": self.model, "task": self.task, "methods": list(self.methods),
                "sparsities": list(self.sparsities), **self.options}
