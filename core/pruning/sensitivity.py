"""Per-layer sensitivity: how much fidelity each Linear layer costs when it alone is pruned, and a recipe.

``layer_sensitivity`` prunes one selected layer at a time (magnitude by default) at each sparsity and scores
the model against the dense one on the evaluation pairs: ``fidelity_drop`` is 1 - mean cosine. ``recipe``
turns those drops and per-layer speed gains (``speed_gains``: from the What-if kernel tables) into a
per-layer sparsity that maximises the estimated gain under a fidelity budget, greedily by gain per drop,
assuming the drops of different layers add up.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from core.errors import SparseLabError
from core.jobs import NO_PROGRESS, Progress
from core.pruning.apply import PruneConfig, plan
from core.pruning.session import DEFAULT_MODEL, PruneSession

SPARSITIES = (0.5, 0.9)


def _layer_config(params: dict, name: str, sparsity: float) -> PruneConfig:
    return PruneConfig.from_params({**params, "sparsity": sparsity, "patterns": [f"re:^{re.escape(name)}$"],
                                    "exclude": []})


def sensitivity_configs(session_model, sparsities: Sequence[float], params: dict) -> dict[str, list[PruneConfig]]:
    """Per selected layer, one validated single-layer config per sparsity; refuses bad input before any work."""
    if not sparsities:
        raise SparseLabError("Give at least one sparsity to measure each layer's sensitivity at.")
    selection = {k: params[k] for k in ("patterns", "exclude") if params.get(k)}
    base = PruneConfig.from_params({**params, **selection, "sparsity": float(sparsities[0])})
    layers = plan(session_model, base)
    configs = {name: [_layer_config(params, name, float(s)) for s in sparsities] for name in layers}
    for name, layer_configs in configs.items():
        for config in layer_configs:
            if list(plan(session_model, config)) != [name]:
                raise SparseLabError(f"Could not select layer '{name}' on its own.")
    return configs


def layer_sensitivity(model: str = DEFAULT_MODEL, sparsities: Sequence[float] = SPARSITIES,
                      params: dict | None = None, task: str = "base", progress: Progress = NO_PROGRESS,
                      session: PruneSession | None = None) -> list[dict]:
    """``[{name, sparsity, fidelity_drop, mean_cosine, min_cosine, retrieval_accuracy}]``, one per layer and
    sparsity, in layer order. ``params``: PruneConfig params (method, default magnitude; patterns; ...)."""
    params = {"method": "magnitude", **(params or {})}
    sparsities = [float(s) for s in sparsities]
    for s in sparsities:
        if not 0.0 <= s < 1.0:
            raise SparseLabError(f"Sparsity {s} is outside [0, 1): 0 keeps every weight, 0.9 removes 90%.")
    progress(0.0, f"loading {model}")
    session = session or PruneSession.open(model, task)
    configs = sensitivity_configs(session.model, sparsities, params)
    rows, total, done = [], sum(len(c) for c in configs.values()), 0
    for name, layer_configs in configs.items():
        for config in layer_configs:
            progress(done / total, f"{name} at {config.target_sparsity:g}")
            _, scored, _ = session.prune(config)
            rows.append({"name": name, "sparsity": config.target_sparsity,
                         "fidelity_drop": 1.0 - scored.mean_cosine, **scored.as_dict()})
            done += 1
    session.restore()
    progress(1.0, f"{len(configs)} layers measured")
    return rows


def _drops(sensitivity) -> dict[str, dict[float, float]]:
    """``{layer: {sparsity: drop}}`` from the rows ``layer_sensitivity`` returns, or that mapping itself."""
    if isinstance(sensitivity, dict):
        return {name: {float(s): float(d) for s, d in by_s.items()} for name, by_s in sensitivity.items()}
    out: dict[str, dict[float, float]] = {}
    for row in sensitivity:
        out.setdefault(row["name"], {})[float(row["sparsity"])] = float(row["fidelity_drop"])
    return out


def _gain(gains, name: str, sparsity: float) -> float:
    by_layer = gains.get(name, 0.0)
    if isinstance(by_layer, dict):
        return float(by_layer.get(sparsity, by_layer.get(str(sparsity), 0.0)))
    return float(by_layer) * sparsity  # one number: gain per unit of sparsity


def recipe(sensitivity, speed_gain_per_layer: dict, budget: float) -> dict[str, float]:
    """A sparsity per layer (0.0: stays dense) maximising the summed speed gain while the summed fidelity
    drop stays within ``budget``.

    ``sensitivity``: rows ``{name, sparsity, fidelity_drop}`` (``layer_sensitivity``) or
    ``{layer: {sparsity: drop}}``. ``speed_gain_per_layer``: ``{layer: {sparsity: gain}}`` (e.g. ms saved,
    from ``speed_gains``) or ``{layer: gain per unit sparsity}``. Greedy: repeatedly take the step (one layer
    to a higher measured sparsity) with the best gain per added drop that still fits the budget; the same
    greedy by plain gain is tried too (it wins when one big step beats many cheap ones), and the better of
    the two is returned. Negative drops count as zero.
    """
    if budget < 0:
        raise SparseLabError(f"The fidelity budget {budget} is negative: give the drop in mean cosine you accept.")
    drops = _drops(sensitivity)
    results = [_greedy(drops, speed_gain_per_layer, budget, by_ratio) for by_ratio in (True, False)]
    return max(results, key=lambda levels: sum(_gain(speed_gain_per_layer, n, s) for n, s in levels.items() if s))


def _greedy(drops: dict, gains: dict, budget: float, by_ratio: bool) -> dict[str, float]:
    level = {name: 0.0 for name in drops}
    spent = 0.0
    while True:
        best = None
        for name, by_s in drops.items():
            now = level[name]
            now_drop = max(0.0, by_s.get(now, 0.0)) if now else 0.0
            now_gain = _gain(gains, name, now) if now else 0.0
            for s, drop in by_s.items():
                if s <= now:
                    continue
                added_drop = max(0.0, max(0.0, drop) - now_drop)
                added_gain = _gain(gains, name, s) - now_gain
                if added_gain <= 0 or spent + added_drop > budget + 1e-12:
                    continue
                key = (added_gain / max(added_drop, 1e-12), added_gain) if by_ratio else (added_gain, -added_drop)
                if best is None or key > best[0]:
                    best = (key, name, s, added_drop)
        if best is None:
            return level
        _, name, s, added_drop = best
        level[name] = s
        spent += added_drop


def speed_gains(layers: dict[str, tuple[int, int]], sparsities: Iterable[float], block: tuple[int, int] = (16, 1),
                tokens: int = 128, threads: int = 2, cache=None) -> dict[str, dict[float, float]]:
    """``{layer: {sparsity: ms saved}}``: the What-if kernel tables' dense time of each layer shape minus its
    BSR time with ``block`` at each sparsity (timed and cached per CPU on first use; a block that does not
    divide a layer saves nothing)."""
    from core.pruning.block import divides
    from core.whatif.kernel_timings import bsr_curve, dense_kernel_ms

    gains: dict[str, dict[float, float]] = {}
    by_shape: dict[tuple[int, int], dict[float, float]] = {}
    for name, shape in layers.items():
        shape = tuple(shape)
        if shape not in by_shape:
            by_shape[shape] = {}
            if divides(shape, block):
                dense, _ = dense_kernel_ms(tokens, shape, threads, cache)
                curve, _ = bsr_curve(tokens, shape, block, threads, cache)
                by_shape[shape] = {float(s): dense.ms - curve.at(float(s))[0] for s in sparsities}
        gains[name] = dict(by_shape[shape]) or {float(s): 0.0 for s in sparsities}
    return gains


def recipe_gain(levels: dict[str, float], gains: dict) -> float:
    """The estimated gain (e.g. ms saved) of per-layer sparsities ``levels``."""
    return sum(_gain(gains, name, s) for name, s in levels.items() if s)


def matching_recipe(sensitivity, gains: dict, target_gain: float, steps: int = 40) -> tuple[dict[str, float], float]:
    """``(levels, budget)``: the recipe with the smallest fidelity budget whose estimated gain reaches
    ``target_gain`` (e.g. what uniform pruning at 90% saves by the same tables). Bisection on the budget, over
    ``recipe``; refuses a target no measured sparsity can reach."""
    drops = _drops(sensitivity)
    high = sum(max(max(0.0, d) for d in by_s.values()) for by_s in drops.values()) + 1e-9
    best = recipe(sensitivity, gains, high)
    if recipe_gain(best, gains) < target_gain - 1e-12:
        raise SparseLabError(f"No recipe over the measured sparsities saves {target_gain:.3g} (at most "
                             f"{recipe_gain(best, gains):.3g}): measure the layers at higher sparsities too.")
    low = 0.0
    for _ in range(steps):
        middle = (low + high) / 2
        levels = recipe(sensitivity, gains, middle)
        if recipe_gain(levels, gains) >= target_gain - 1e-12:
            high, best = middle, levels
        else:
            low = middle
    return best, high


def apply_recipe(session: PruneSession, levels: dict[str, float], params: dict | None = None):
    """Prune ``session``'s dense model to per-layer sparsities ``levels`` (0.0: the layer stays dense), each layer
    with ``params``' method (magnitude by default) on its own; returns its fidelity against the dense model and
    the sparsity over the recipe's layers."""
    from core.pruning.apply import prune_model

    params = {"method": "magnitude", **(params or {})}
    configs = [_layer_config(params, name, float(s)) for name, s in levels.items() if s > 0]  # validated first
    session.restore()
    for config in configs:
        prune_model(session.model, config, tokenizer=session.tokenizer)
    layers = dict(session.model.named_modules())
    zeros = sum(int((layers[name].weight == 0).sum()) for name in levels)
    total = sum(layers[name].weight.numel() for name in levels)
    return session.score(), (zeros / total if total else 0.0)
