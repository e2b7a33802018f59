"""Pruning methods as a registry: one module per method in this package, found at import.

A method says three things about itself, in the style of torchao's ``sparsify_`` configs with a
registered handler: which layers it can take (``check``: refuse before any weight changes), how
it prunes (``prune``: in place, dense with zeros), and what structure its zeros have
(``pattern``). Methods that need the model and calibration activations, not just the weights, set
``needs_calibration`` and override ``prune_model`` (SparseGPT, Wanda). Adding a method is one new module
here: define a subclass of ``PruningMethod`` and decorate it with ``@register``.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING

from core.errors import SparseLabError

if TYPE_CHECKING:
    from core.pruning.apply import PruneConfig

_REGISTRY: dict[str, PruningMethod] = {}


class PruningMethod:
    """How one method prunes. Subclasses set ``name`` and override what differs."""

    name: str = ""
    description: str = ""
    spec_key: str | None = None  # the PruneConfig param a sweep spec's detail sets: block:16x1 -> "block"
    scopes: tuple[str, ...] = ("layer",)  # "global": one threshold over all selected layers
    order: int = 100  # position in pickers and --help
    sets_own_sparsity: bool = False  # m:n: 2:4 is 50%, a sweep gives it one point, not a curve
    needs_calibration: bool = False  # SparseGPT, Wanda: prune_model gets the model and calibration inputs

    def target_sparsity(self, config: PruneConfig) -> float:
        """The sparsity this configuration removes; methods that fix their own override it (m:n)."""
        return config.sparsity

    def fixed_sparsity(self, config: PruneConfig) -> float | None:
        """The sparsity the method sets by itself, if it does (then the request must not ask another)."""
        return None

    def validate(self, config: PruneConfig) -> None:
        """Checks of the configuration alone, beyond the shared ones in PruneConfig.validate."""

    def check_requested_sparsity(self, config: PruneConfig, requested: float | None) -> None:
        """Refuse a requested sparsity the method cannot reach (a method that sets its own)."""

    def check(self, name: str, shape: tuple[int, int], config: PruneConfig) -> None:
        """Refuse a selected layer this method cannot prune (with a message saying what to change)."""

    def pattern(self, config: PruneConfig) -> str | None:
        """The structure the zeros have: block shape, m:n, or None for unstructured."""
        return None

    def label(self, config: PruneConfig) -> str:
        words = [self.name, self.pattern(config), "global" if config.scope == "global" else None]
        return " ".join(w for w in words if w)

    def prune(self, layers: dict, config: PruneConfig) -> None:
        """Prune ``layers`` ({name: Linear}) in place, under ``torch.no_grad``; every check has passed."""
        weights = [module.weight for module in layers.values()]
        for weight, keep in zip(weights, self.keep_masks(weights, config)):
            weight.masked_fill_(~keep, 0)

    def prune_model(self, model, layers: dict, config: PruneConfig, calibration) -> None:
        """Prune ``layers`` of ``model`` in place, under ``torch.no_grad``. ``calibration`` (a
        ``core.pruning.calibration.Calibration``, None unless ``needs_calibration``) holds the model inputs
        whose activations data-aware methods look at; the others just ``prune`` the layers."""
        self.prune(layers, config)

    def keep_masks(self, weights: list, config: PruneConfig) -> list:
        raise NotImplementedError(f"{type(self).__name__} must define keep_masks or prune")


def register(cls: type[PruningMethod]) -> type[PruningMethod]:
    if not cls.name or cls.name in _REGISTRY:
        raise ValueError(f"pruning method {cls.__name__} needs a unique name, not '{cls.name}'")
    _REGISTRY[cls.name] = cls()
    return cls


def _discover() -> None:
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


def methods() -> dict[str, PruningMethod]:
    """Every registered method by name, in picker order."""
    return dict(sorted(_REGISTRY.items(), key=lambda item: (item[1].order, item[0])))


def get_method(name: str) -> PruningMethod:
    method = _REGISTRY.get(name)
    if method is None:
        raise SparseLabError(f"Unknown pruning method '{name}'; choose one of {', '.join(methods())}.")
    return method


_discover()
