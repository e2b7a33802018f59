"""Per-layer sparsity for one overall target, from each layer's measured sensitivity (``allocation="sensitivity"``).

Uniform pruning gives every layer the same share of zeros. Layers do not suffer alike: in MiniLM, SparseGPT in
16x1 blocks at 50%, one layer alone, costs the first FFN up-projection 0.021 of mean cosine on calibration text and
the first query projection 0.0017 (at 80%: 0.050 and 0.0062). Here, before a data-aware method (SparseGPT, Wanda)
prunes, each selected layer is pruned alone at a grid of sparsities around the target (``candidate_levels``), with
the method's own ``prune_weight`` and the input Hessian of the dense model on the calibration text, and the model
is scored against the dense one on that same calibration text: the drop is 1 - the mean cosine of the mean-pooled
last hidden states. The evaluation pairs are never looked at, so fidelity measured on them afterwards is not tuned
to them.

``allocate`` then picks one level per layer minimising the summed drops while the parameter-weighted mean sparsity
reaches the target (a Lagrange multiplier, bisected), in the manner of OWL (Yin et al., 2024) and of Sparsify's
loss profiles. Drops of different layers are assumed to add up; when the chosen levels' summed drop is not below
the uniform one's, the uniform levels are kept.

Measured on MiniLM (80% in 16x1 blocks, SparseGPT with 256 calibration sentences, lr 3e-3; fidelity on the
evaluation pairs; README): one-shot mean cosine 0.414 uniform -> 0.515 allocated, and after a fixed 1,000 recovery
steps 0.781 -> 0.803; 15 minutes: 0.838 (3,698 steps on a busy host) against 0.830 uniform (4,891 steps, an
earlier session). Scoring the candidates on the evaluation pairs instead (a probe, not what ships) gave 0.495
and 0.805: the calibration text picks about as well. Measuring takes ~3.5 minutes for MiniLM's 36 layers x 10
levels on 2 cores.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from core.errors import SparseLabError

ALLOCATIONS = ("uniform", "sensitivity")
LEVEL_STEP = 0.05
LEVEL_SPAN = 0.3  # levels from target - span to target + span (within [0, MAX_LEVEL])
MAX_LEVEL = 0.95
SCORE_SENTENCES = 256  # calibration sentences each candidate is scored on (the first batches)


def candidate_levels(target: float) -> list[float]:
    """The sparsities each layer is measured at: ``target`` and steps of 0.05 around it, in [0, 0.95]."""
    steps = round(LEVEL_SPAN / LEVEL_STEP)
    levels = {round(target, 6)}
    for i in range(-steps, steps + 1):
        level = round(target + i * LEVEL_STEP, 6)
        if 0.0 <= level <= max(MAX_LEVEL, target):
            levels.add(level)
    return sorted(levels)


def allocate(drops: dict[str, dict[float, float]], sizes: dict[str, int], target: float) -> dict[str, float]:
    """``{layer: sparsity}`` minimising the summed drop, with ``sum(size * sparsity) / sum(size) >= target``.

    ``drops``: ``{layer: {sparsity: drop}}``, every layer measured at ``target`` too (the uniform fallback).
    """
    names = list(drops)
    if not names:
        raise SparseLabError("No layers to allocate sparsity over.")
    missing = [n for n in names if target not in drops[n]]
    if missing:
        raise SparseLabError(f"Layer {missing[0]} was not measured at the target sparsity {target}.")
    total = float(sum(sizes[n] for n in names))

    def choose(lam: float) -> dict[str, float]:
        return {n: min(drops[n], key=lambda s, n=n: (drops[n][s] - lam * sizes[n] / total * s, s)) for n in names}

    def mean(levels: dict[str, float]) -> float:
        return sum(sizes[n] * s for n, s in levels.items()) / total

    def summed(levels: dict[str, float]) -> float:
        return sum(drops[n][s] for n, s in levels.items())

    uniform = {n: target for n in names}
    low, high = 0.0, 1.0
    while mean(choose(high)) < target - 1e-9:  # a multiplier large enough to reach the target
        high *= 2.0
        if high > 1e12:
            return uniform
    for _ in range(80):
        middle = (low + high) / 2.0
        if mean(choose(middle)) >= target - 1e-9:
            high = middle
        else:
            low = middle
    levels = choose(high)
    return levels if summed(levels) < summed(uniform) else uniform


def layer_drops(model, layers: dict, config, batches: list, prune_weight: Callable) -> dict[str, dict[float, float]]:
    """``{layer: {sparsity: drop}}``: each of ``layers`` pruned alone by ``prune_weight(weight, hessian, config)``
    at every ``candidate_levels`` sparsity; the drop is 1 - mean cosine of the pooled last hidden states against
    the unpruned model on ``batches``. The model is left as it was. Hessians are gathered one transformer block at
    a time (memory: one block's, not the model's)."""
    import torch

    from core.pruning.calibration import _collect, _run_model, transformer_blocks

    score_batches = _score_batches(batches)
    levels = candidate_levels(config.sparsity)
    drops: dict[str, dict[float, float]] = {}
    with torch.no_grad():
        dense = _pooled(model, score_batches)
        for _prefix, _block, block_layers in transformer_blocks(model, layers):
            state: dict = {}
            stats = _collect(lambda state=state: _run_model(model, batches, state), block_layers, state)
            for name, module in block_layers.items():
                original = module.weight.detach().clone()
                hessian = stats[name].hessian()
                drops[name] = {}
                try:
                    for level in levels:
                        pruned = prune_weight(original, hessian, replace(config, sparsity=level))
                        module.weight.copy_(pruned.to(module.weight.dtype))
                        drops[name][level] = 1.0 - float((_pooled(model, score_batches) * dense).sum(-1).mean())
                finally:
                    module.weight.copy_(original)
    return drops


def sensitivity_levels(model, layers: dict, config, batches: list, prune_weight: Callable) -> dict[str, float]:
    """The per-layer sparsities ``allocate`` picks from ``layer_drops``."""
    drops = layer_drops(model, layers, config, batches, prune_weight)
    sizes = {name: int(module.weight.numel()) for name, module in layers.items()}
    return allocate(drops, sizes, round(config.sparsity, 6))


def _score_batches(batches: list) -> list:
    chosen, rows = [], 0
    for batch in batches:
        if rows >= SCORE_SENTENCES:
            break
        chosen.append(batch)
        rows += int(batch["input_ids"].shape[0])
    return chosen


def _pooled(model, batches: list):
    """Each sentence's sentence embedding (``core.fidelity.mean_pool`` of the last hidden state)."""
    import torch

    from core.fidelity import mean_pool

    out = []
    for batch in batches:
        hidden = model(**batch, output_hidden_states=True).hidden_states[-1].float()
        mask = batch.get("attention_mask")
        out.append(mean_pool(hidden, torch.ones(hidden.shape[:2]) if mask is None else mask))
    return torch.cat(out)
