"""``prune_model(model, PruneConfig) -> PruneResult``: one call for every method.

Everything is checked before the first weight changes (method, sparsity, m:n,
layer patterns, block and group divisibility of every selected layer), so a
refused request leaves the model as it was. Weights are changed in place and
stay dense, with zeros.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from core.errors import SparseLabError
from core.pruning.block import NORMS, block_masks, check_divisible, format_block, parse_block
from core.pruning.m_by_n import check_groups, check_mn, mn_mask, mn_sparsity, parse_mn
from core.pruning.magnitude import SCOPES, magnitude_masks
from core.pruning.random_weights import random_block_sparse
from core.pruning.selection import select_linear_layers
from core.pruning.stats import LayerSparsity, layer_sparsities, overall_sparsity

METHODS = ("magnitude", "block", "mn", "random")


@dataclass(frozen=True)
class PruneConfig:
    """How to prune. ``block`` also sets the block shape the stats report; m:n ignores ``sparsity`` (its
    own is 1 - m/n, see ``target_sparsity``)."""

    method: str = "magnitude"
    sparsity: float = 0.5
    block: tuple[int, int] = (16, 1)
    m: int = 2
    n: int = 4
    scope: str = "layer"
    norm: str = "l2"
    patterns: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    seed: int = 0

    @classmethod
    def from_params(cls, params: dict) -> "PruneConfig":
        """A validated config from JSON-friendly params (CLI, jobs): ``block`` as '16x1', ``mn`` as '2:4'.

        ``sparsity`` is required, except for m:n, which sets its own and refuses any other.
        """
        m, n = parse_mn(params.get("mn") or "2:4")
        method, sparsity = params.get("method") or "magnitude", params.get("sparsity")
        if method == "mn":
            if sparsity not in (None, mn_sparsity(m, n)):
                raise SparseLabError(f"m:n {m}:{n} prunes exactly {mn_sparsity(m, n):g} of the weights; "
                                     f"it cannot reach sparsity {sparsity} (leave the sparsity out).")
            sparsity = mn_sparsity(m, n)
        elif sparsity is None:
            raise SparseLabError(f"Give a sparsity in [0, 1) for {method} pruning.")
        known = {k: params[k] for k in ("scope", "norm", "seed") if params.get(k) is not None}
        config = cls(method=method, sparsity=float(sparsity), block=parse_block(params.get("block") or "16x1"),
                     m=m, n=n, patterns=tuple(params.get("patterns") or ()),
                     exclude=tuple(params.get("exclude") or ()), **known)
        config.validate()
        return config

    @classmethod
    def from_spec(cls, spec: str, params: dict) -> "PruneConfig":
        """``magnitude``, ``magnitude:global``, ``block:16x1``, ``mn:2:4`` or ``random:16x1`` over ``params``."""
        method, _, detail = spec.partition(":")
        key = {"magnitude": "scope", "block": "block", "random": "block", "mn": "mn"}.get(method)
        return cls.from_params({**params, "method": method, **({key: detail} if key and detail else {})})

    def validate(self) -> None:
        if self.method not in METHODS:
            raise SparseLabError(f"Unknown pruning method '{self.method}'; choose one of {', '.join(METHODS)}.")
        if not 0.0 <= self.sparsity < 1.0:
            raise SparseLabError(f"Sparsity {self.sparsity} is outside [0, 1): 0 keeps every weight, "
                                 "0.9 removes 90%.")
        if self.scope not in SCOPES or (self.scope == "global" and self.method not in ("magnitude", "block")):
            raise SparseLabError(f"Scope '{self.scope}' is not available for {self.method}: 'layer' always is, "
                                 "'global' for magnitude and block.")
        if self.norm not in NORMS:
            raise SparseLabError(f"Unknown block norm '{self.norm}'; choose one of {', '.join(NORMS)}.")
        if self.method == "mn":
            check_mn(self.m, self.n)

    @property
    def target_sparsity(self) -> float:
        return mn_sparsity(self.m, self.n) if self.method == "mn" else self.sparsity

    @property
    def pattern(self) -> str | None:
        """The structure the zeros have: block shape, m:n, or None for unstructured magnitude."""
        if self.method == "mn":
            return f"{self.m}:{self.n}"
        return format_block(self.block) if self.method in ("block", "random") else None

    @property
    def label(self) -> str:
        """A curve name: ``magnitude``, ``magnitude global``, ``block 16x1``, ``2:4``, ``random 16x1``."""
        if self.method == "mn":
            return self.pattern
        words = [self.method, self.pattern, "global" if self.scope == "global" else None]
        return " ".join(w for w in words if w)

    def as_dict(self) -> dict:
        return {**asdict(self), "block": format_block(self.block), "patterns": list(self.patterns),
                "exclude": list(self.exclude), "target_sparsity": self.target_sparsity, "label": self.label}


@dataclass(frozen=True)
class PruneResult:
    """Every Linear layer's sparsity after pruning, and the pooled sparsity of the pruned ones."""

    config: PruneConfig
    layers: tuple[LayerSparsity, ...]

    @property
    def sparsity(self) -> float:
        return overall_sparsity(l for l in self.layers if l.selected)

    def as_dict(self) -> dict:
        """``pattern`` is the structure of the zeros (None, '16x1', '2:4'); ``stats_block`` is the block
        that each layer's ``block_sparsity`` counts."""
        return {"method": self.config.method, "label": self.config.label, "pattern": self.config.pattern,
                "target_sparsity": self.config.target_sparsity, "sparsity": self.sparsity,
                "stats_block": format_block(self.config.block), "layers": [l.as_dict() for l in self.layers]}


def plan(model, config: PruneConfig) -> dict:
    """The layers ``config`` would prune, after every check that could refuse it; changes nothing."""
    config.validate()
    layers = select_linear_layers(model, config.patterns, config.exclude)
    for name, module in layers.items():
        shape = tuple(module.weight.shape)
        if config.method in ("block", "random"):
            check_divisible(name, shape, config.block)
        elif config.method == "mn":
            check_groups(name, shape, config.n)
    return layers


def _keep_masks(config: PruneConfig, weights: list) -> list:
    if config.method == "block":
        return block_masks(weights, config.sparsity, config.block, config.scope, config.norm)
    if config.method == "mn":
        return [mn_mask(w, config.m, config.n) for w in weights]
    return magnitude_masks(weights, config.sparsity, config.scope)


def _fill_random(config: PruneConfig, layers: dict) -> None:
    """What-if weights with each layer's own spread, so activations stay in their usual range."""
    import torch

    for index, (name, module) in enumerate(layers.items()):
        weight = module.weight
        values = random_block_sparse(tuple(weight.shape), config.sparsity, config.block,
                                     seed=(config.seed, index), scale=float(weight.float().std()), name=name)
        weight.copy_(torch.from_numpy(values).to(weight.dtype))


def prune_model(model, config: PruneConfig) -> PruneResult:
    """Prune the selected Linear layers of ``model`` in place; refuse bad requests before touching it."""
    import torch

    layers = plan(model, config)
    with torch.no_grad():
        if config.method == "random":
            _fill_random(config, layers)
        else:
            weights = [module.weight for module in layers.values()]
            for weight, keep in zip(weights, _keep_masks(config, weights)):
                weight.masked_fill_(~keep, 0)
    return PruneResult(config=config, layers=tuple(layer_sparsities(model, config.block, layers)))
