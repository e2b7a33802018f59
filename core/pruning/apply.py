"""``prune_model(model, PruneConfig) -> PruneResult``: one call for every method.

Everything is checked before the first weight changes (method, sparsity, m:n,
layer patterns, block and group divisibility of every selected layer), so a
refused request leaves the model as it was. Weights are changed in place and
stay dense, with zeros.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from core.errors import SparseLabError
from core.pruning.block import NORMS, format_block, parse_block
from core.pruning.m_by_n import parse_mn
from core.pruning.magnitude import SCOPES
from core.pruning.methods import get_method, methods
from core.pruning.selection import select_linear_layers
from core.pruning.stats import LayerSparsity, layer_sparsities, overall_sparsity

METHODS = tuple(methods())
DEFAULT_SPARSITY = 0.5
DEFAULT_BLOCK = "16x1"
DEFAULT_MN = "2:4"
STRUCTURES = ("unstructured", "mn", "block")  # the zeros' shape for methods that take one (sparsegpt, wanda)
DEFAULT_CALIBRATION = 512  # calibration sentences for the data-aware methods
DEFAULT_DAMPING = 0.01  # SparseGPT's percdamp: this times H's mean diagonal is added to the diagonal
# in params and as_dict only for the data-aware methods
CALIBRATION_FIELDS = ("structure", "calibration", "damping", "allocation")


@dataclass(frozen=True)
class PruneConfig:
    """How to prune. ``block`` also sets the block shape the stats report; m:n ignores ``sparsity`` (its
    own is 1 - m/n, see ``target_sparsity``)."""

    method: str = "magnitude"
    sparsity: float = DEFAULT_SPARSITY
    block: tuple[int, int] = parse_block(DEFAULT_BLOCK)
    m: int = parse_mn(DEFAULT_MN)[0]
    n: int = parse_mn(DEFAULT_MN)[1]
    scope: str = "layer"
    norm: str = "l2"
    patterns: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    seed: int = 0
    structure: str = "unstructured"  # data-aware methods: unstructured, mn (m:n) or block (``block``)
    calibration: int = DEFAULT_CALIBRATION  # data-aware methods: how many calibration sentences
    damping: float = DEFAULT_DAMPING  # sparsegpt: Hessian damping, as a fraction of its mean diagonal
    # data-aware methods: "uniform" (every layer at ``sparsity``) or "sensitivity" (per-layer sparsities from each
    # layer's measured drop on the calibration text, ``sparsity`` overall: core.pruning.allocation)
    allocation: str = "uniform"

    @classmethod
    def from_params(cls, params: dict) -> PruneConfig:
        """A validated config from JSON-friendly params (CLI, jobs): ``block`` as '16x1', ``mn`` as '2:4'.

        ``sparsity`` is required, except for m:n, which sets its own and refuses any other.
        """
        m, n = parse_mn(params.get("mn") or DEFAULT_MN)
        method = get_method(params.get("method") or "magnitude")
        sparsity = params.get("sparsity")
        known = {k: params[k] for k in ("scope", "norm", "seed", "structure", "allocation")
                 if params.get(k) is not None}
        known.update({k: t(params[k]) for k, t in (("calibration", int), ("damping", float))
                      if params.get(k) is not None})
        config = cls(method=method.name, sparsity=-1.0, block=parse_block(params.get("block") or DEFAULT_BLOCK),
                     m=m, n=n, patterns=tuple(params.get("patterns") or ()),
                     exclude=tuple(params.get("exclude") or ()), **known)
        method.check_requested_sparsity(config, sparsity)
        fixed = method.fixed_sparsity(config)
        if sparsity is None and fixed is None:
            raise SparseLabError(f"Give a sparsity in [0, 1) for {method.name} pruning.")
        config = replace(config, sparsity=float(fixed if sparsity is None else sparsity))
        config.validate()
        return config

    def as_params(self) -> dict:
        """The JSON-friendly params ``from_params`` takes back to this very config."""
        fixed = get_method(self.method).sets_own_sparsity
        return {"method": self.method, "sparsity": None if fixed else self.sparsity,
                "block": format_block(self.block), "mn": f"{self.m}:{self.n}", "scope": self.scope,
                "norm": self.norm, "patterns": list(self.patterns), "exclude": list(self.exclude), "seed": self.seed,
                **self._calibration_params()}

    def _calibration_params(self) -> dict:
        if not get_method(self.method).needs_calibration:
            return {}
        return {"structure": self.structure, "calibration": self.calibration, "damping": self.damping,
                "allocation": self.allocation}

    @classmethod
    def from_spec(cls, spec: str, params: dict) -> PruneConfig:
        """``magnitude``, ``magnitude:global``, ``block:16x1``, ``mn:2:4`` or ``random:16x1`` over ``params``."""
        method, _, detail = spec.partition(":")
        key = get_method(method).spec_key
        return cls.from_params({**params, "method": method, **({key: detail} if key and detail else {})})

    def validate(self) -> None:
        method = get_method(self.method)
        if not 0.0 <= self.sparsity < 1.0:
            raise SparseLabError(f"Sparsity {self.sparsity} is outside [0, 1): 0 keeps every weight, "
                                 "0.9 removes 90%.")
        if self.scope not in SCOPES or self.scope not in method.scopes:
            with_global = [name for name, m in methods().items() if "global" in m.scopes]
            raise SparseLabError(f"Scope '{self.scope}' is not available for {self.method}: 'layer' always is, "
                                 f"'global' for {' and '.join(with_global)}.")
        if self.structure not in STRUCTURES:
            raise SparseLabError(f"Unknown structure '{self.structure}'; choose one of {', '.join(STRUCTURES)}.")
        if not isinstance(self.calibration, int) or self.calibration < 1:
            raise SparseLabError(f"Calibration size {self.calibration} must be a positive number of sentences.")
        if not 0.0 <= self.damping < 10.0:
            raise SparseLabError(f"Damping {self.damping} is outside [0, 10): 0.01 adds 1% of the Hessian's mean "
                                 "diagonal.")
        from core.pruning.allocation import ALLOCATIONS

        if self.allocation not in ALLOCATIONS:
            raise SparseLabError(f"Unknown allocation '{self.allocation}'; choose one of {', '.join(ALLOCATIONS)}.")
        if self.allocation != "uniform" and not method.needs_calibration:
            data_aware = [name for name, m in methods().items() if m.needs_calibration]
            raise SparseLabError(f"Allocation '{self.allocation}' measures layers on calibration text: it works with "
                                 f"{' and '.join(data_aware)}, not {self.method}.")
        if self.norm not in NORMS:
            raise SparseLabError(f"Unknown block norm '{self.norm}'; choose one of {', '.join(NORMS)}.")
        method.validate(self)

    @property
    def target_sparsity(self) -> float:
        return get_method(self.method).target_sparsity(self)

    @property
    def pattern(self) -> str | None:
        """The structure the zeros have: block shape, m:n, or None for unstructured magnitude."""
        return get_method(self.method).pattern(self)

    @property
    def label(self) -> str:
        """A curve name: ``magnitude``, ``magnitude global``, ``block 16x1``, ``2:4``, ``random 16x1``."""
        return get_method(self.method).label(self)

    def as_dict(self) -> dict:
        fields = {k: v for k, v in asdict(self).items() if k not in CALIBRATION_FIELDS}
        return {**fields, **self._calibration_params(), "block": format_block(self.block),
                "patterns": list(self.patterns), "exclude": list(self.exclude),
                "target_sparsity": self.target_sparsity, "label": self.label}


@dataclass(frozen=True)
class PruneResult:
    """Every Linear layer's sparsity after pruning, and the pooled sparsity of the pruned ones."""

    config: PruneConfig
    layers: tuple[LayerSparsity, ...]
    calibration: dict | None = None  # data-aware methods: where the calibration inputs came from

    @property
    def sparsity(self) -> float:
        return overall_sparsity(l for l in self.layers if l.selected)

    def as_dict(self) -> dict:
        """``pattern`` is the structure of the zeros (None, '16x1', '2:4'); ``stats_block`` is the block
        that each layer's ``block_sparsity`` counts."""
        return {"method": self.config.method, "label": self.config.label, "pattern": self.config.pattern,
                "target_sparsity": self.config.target_sparsity, "sparsity": self.sparsity,
                "stats_block": format_block(self.config.block), "layers": [l.as_dict() for l in self.layers],
                **({"calibration": self.calibration} if self.calibration is not None else {})}


def plan(model, config: PruneConfig) -> dict:
    """The layers ``config`` would prune, after every check that could refuse it; changes nothing."""
    config.validate()
    method = get_method(config.method)
    layers = select_linear_layers(model, config.patterns, config.exclude)
    for name, module in layers.items():
        method.check(name, tuple(module.weight.shape), config)
    return layers


def pruned_copy(model, config: PruneConfig):
    """A pruned deep copy of ``model``; the model itself stays as it was."""
    import copy

    sparse = copy.deepcopy(model)
    prune_model(sparse, config)
    return sparse


def prune_model(model, config: PruneConfig, tokenizer=None, calibration=None) -> PruneResult:
    """Prune the selected Linear layers of ``model`` in place; refuse bad requests before touching it.

    Data-aware methods (``needs_calibration``) run ``calibration`` (a Calibration, batches of model inputs or
    sentences) or, by default, ``config.calibration`` corpus sentences tokenized with ``tokenizer`` (default:
    the one saved with the model, if any); a model without a tokenizer gets seeded random token ids, and the
    result's ``calibration`` says which.
    """
    import torch

    layers = plan(model, config)
    method = get_method(config.method)
    inputs = calibration_inputs(model, config, tokenizer, calibration) if method.needs_calibration else None
    with torch.no_grad():
        method.prune_model(model, layers, config, inputs)
    return PruneResult(config=config, layers=tuple(layer_sparsities(model, config.block, layers)),
                       calibration=inputs.describe() if inputs is not None else None)


def model_tokenizer(model):
    """The tokenizer saved next to the model's weights (bundled, local and hub models), or None."""
    from pathlib import Path

    folder = getattr(getattr(model, "config", None), "_name_or_path", "") or ""
    if not folder or not Path(folder).is_dir():
        return None
    if not any((Path(folder) / name).exists() for name in ("tokenizer.json", "vocab.txt", "tokenizer_config.json")):
        return None
    import transformers

    return transformers.AutoTokenizer.from_pretrained(folder)


def calibration_inputs(model, config: PruneConfig, tokenizer=None, calibration=None):
    """The calibration a data-aware pruning runs (``prune_model``'s rules); refuses empty or too short text."""
    from core.pruning.calibration import as_calibration, random_token_batches
    from core.pruning.calibration import calibration as corpus_calibration

    tokenizer = tokenizer if tokenizer is not None else model_tokenizer(model)
    if calibration is not None:
        return as_calibration(calibration, tokenizer, config.seed)
    if tokenizer is None:
        vocab = getattr(getattr(model, "config", None), "vocab_size", None) or 1000
        return random_token_batches(vocab, config.calibration, seed=config.seed)
    return corpus_calibration(tokenizer, config.calibration, seed=config.seed)
