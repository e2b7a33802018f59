"""``wanda``: prune by |weight| x input-activation norm, no weight update (Sun et al., 2023).

A weight's score is |W_ij| * ||X_j||_2 over the real tokens of the calibration inputs. Unstructured, each
output row loses the same share (the paper's per-output comparison; the rounding remainder goes to the rows
whose next candidate scores lowest, so the layer's sparsity is exact); m:n keeps the m best of every n
inputs; blocks go by the L2 norm of their scores. Layers are pruned block by block with inputs from the
already pruned model, as in the paper's code.
"""

from __future__ import annotations

from core.pruning.block import block_scores, expand_block_mask
from core.pruning.m_by_n import mn_mask
from core.pruning.magnitude import keep_masks
from core.pruning.methods import register
from core.pruning.methods.sparsegpt import DataAware


def wanda_scores(weight, hessian):
    """|W| * ||X_j||: the column norms come from the diagonal of ``2 X^T X / n`` (the scale does not matter)."""
    import torch

    return weight.detach().double().abs() * torch.diag(hessian.double()).clamp(min=0).sqrt()[None, :]


def per_row_drop(scores, sparsity: float):
    """Drop-mask removing ``round(sparsity * size)`` scores, the same number per row give or take one."""
    import torch

    rows, cols = scores.shape
    total = round(sparsity * rows * cols)
    base = min(total // rows, cols)
    order = torch.argsort(scores, dim=1, stable=True)
    drop = torch.zeros_like(scores, dtype=torch.bool)
    if base:
        drop.scatter_(1, order[:, :base], True)
    extra = total - base * rows
    if extra > 0 and base < cols:
        nxt = order[:, base]
        candidates = scores.gather(1, nxt[:, None]).squeeze(1)
        chosen = torch.argsort(candidates, stable=True)[:extra]
        drop[chosen, nxt[chosen]] = True
    return drop


@register
class Wanda(DataAware):
    name = "wanda"
    description = "one-shot: |w| x input norm on calibration text, no weight update"
    order = 35

    def prune_weight(self, weight, hessian, config):
        scores = wanda_scores(weight, hessian)
        if config.structure == "mn":
            keep = mn_mask(scores, config.m, config.n)
        elif config.structure == "block":
            keep = expand_block_mask(keep_masks([block_scores(scores, config.block)], config.sparsity)[0],
                                     config.block)
        else:
            keep = ~per_row_drop(scores, config.sparsity)
        return weight.detach().masked_fill(~keep, 0)
