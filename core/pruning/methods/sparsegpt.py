"""``sparsegpt``: one-shot pruning with second-order weight reconstruction (Frantar & Alistarh, 2023).

Per Linear, with h = 2 X^T X / n the Hessian of its squared output error on the calibration inputs (plus
``damping`` times its mean diagonal on the diagonal), the columns are visited left to right in chunks of
128: each chunk's mask is chosen by w^2 / [h^-1]_jj^2 (per weight, per m:n group, or per block), and every
pruned weight's error is pushed onto the columns still to come through the Cholesky factor of h^-1 (lazy
updates between chunks). Layers are pruned block by block, each with inputs from the already pruned model
(``core.pruning.calibration.sequential_prune``).

``DataAware`` is the shared part of the calibrated methods (this one and Wanda): the zeros' structure
(``config.structure``: unstructured, m:n or block), its checks, and the model-level hook. With
``config.allocation == "sensitivity"`` the layers get different sparsities around the target, chosen from each
layer's measured sensitivity (``core.pruning.allocation``).
"""

from __future__ import annotations

from dataclasses import replace

from core.errors import SparseLabError
from core.pruning.block import check_divisible, format_block
from core.pruning.m_by_n import check_groups, check_mn, mn_sparsity
from core.pruning.methods import PruningMethod, register

STRUCTURES = ("unstructured", "mn", "block")
COLUMN_CHUNK = 128


class DataAware(PruningMethod):
    """A method that needs the model and calibration inputs; its zeros are shaped by ``config.structure``."""

    needs_calibration = True

    def fixed_sparsity(self, config):
        return mn_sparsity(config.m, config.n) if config.structure == "mn" else None

    def target_sparsity(self, config):
        fixed = self.fixed_sparsity(config)
        return config.sparsity if fixed is None else fixed

    def validate(self, config):
        if config.structure not in STRUCTURES:
            raise SparseLabError(f"Unknown structure '{config.structure}' for {self.name}; choose one of "
                                 f"{', '.join(STRUCTURES)}.")
        if config.structure == "mn":
            check_mn(config.m, config.n)
            if config.allocation != "uniform":
                raise SparseLabError(f"m:n {config.m}:{config.n} prunes every layer alike; a per-layer "
                                     f"allocation ('{config.allocation}') needs unstructured or block zeros.")

    def check_requested_sparsity(self, config, requested):
        fixed = self.fixed_sparsity(config)
        if fixed is not None and requested not in (None, fixed):
            raise SparseLabError(f"m:n {config.m}:{config.n} prunes exactly {fixed:g} of the weights; "
                                 f"{self.name} cannot reach sparsity {requested} with it (leave the sparsity out).")

    def check(self, name, shape, config):
        if config.structure == "block":
            check_divisible(name, shape, config.block)
        elif config.structure == "mn":
            check_groups(name, shape, config.n)

    def pattern(self, config):
        if config.structure == "block":
            return format_block(config.block)
        if config.structure == "mn":
            return f"{config.m}:{config.n}"
        return None

    def label(self, config):
        base = super().label(config)
        return f"{base} per-layer" if config.allocation == "sensitivity" else base

    def prune(self, layers, config):
        raise SparseLabError(f"{self.name} needs the model and calibration inputs: use core.pruning.apply."
                             "prune_model, not the method's prune.")

    def prune_model(self, model, layers, config, calibration):
        from core.pruning.calibration import sequential_prune

        batches = list(calibration.batches)
        levels = {name: config.sparsity for name in layers}
        if config.allocation == "sensitivity":
            from core.pruning.allocation import sensitivity_levels

            levels = sensitivity_levels(model, layers, config, batches, self.prune_weight)

        def prune_layer(name, module, hessian, tokens):
            chosen = replace(config, sparsity=levels[name])
            module.weight.copy_(self.prune_weight(module.weight, hessian, chosen).to(module.weight.dtype))

        sequential_prune(model, layers, batches, prune_layer)

    def prune_weight(self, weight, hessian, config):
        """The pruned weight (a new tensor) given the layer's input Hessian ``2 X^T X / n``."""
        raise NotImplementedError


def _exact_count(fraction: float, total: int, done_total: int, done: int) -> int:
    """How many to drop now so that the running count stays ``round(fraction * units so far)``."""
    return round(fraction * (done_total + total)) - done


def _lowest(scores, count: int):
    """Boolean mask of the ``count`` lowest scores (ties by position)."""
    import torch

    flat = scores.reshape(-1)
    mask = torch.zeros_like(flat, dtype=torch.bool)
    if count > 0:
        mask[torch.argsort(flat, stable=True)[:count]] = True
    return mask.reshape(scores.shape)


def chunk_width(config, cols: int) -> int:
    """Columns per chunk: 128, rounded down to whole m:n groups or block columns."""
    unit = config.n if config.structure == "mn" else config.block[1] if config.structure == "block" else 1
    return max(unit, COLUMN_CHUNK // unit * unit)


def sparsegpt_weight(weight, hessian, config, chunk: int | None = None):
    """SparseGPT on one ``(out, in)`` weight: the mask and the reconstructed kept weights, as a new tensor."""
    import torch

    w_ = weight.detach().double().clone()
    rows, cols = w_.shape
    h = hessian.double().clone()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1.0
    h += torch.eye(cols, dtype=h.dtype) * (config.damping * float(torch.diag(h).mean()))
    hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    sparsity = config.sparsity
    chunk = chunk or chunk_width(config, cols)
    dropped, done_units = 0, 0
    for i1 in range(0, cols, chunk):
        i2 = min(i1 + chunk, cols)
        count = i2 - i1
        w1 = w_[:, i1:i2].clone()
        q1 = torch.zeros_like(w1)
        err1 = torch.zeros_like(w1)
        hinv1 = hinv[i1:i2, i1:i2]
        d = torch.diag(hinv1)
        if config.structure == "unstructured":
            k = _exact_count(sparsity, rows * count, done_units, dropped)
            mask1 = _lowest(w1 ** 2 / d[None, :] ** 2, k)
            dropped, done_units = dropped + k, done_units + rows * count
        elif config.structure == "block":
            br, bc = config.block
            scores = (w1 ** 2 / d[None, :] ** 2).reshape(rows // br, br, count // bc, bc).sum(dim=(1, 3))
            k = _exact_count(sparsity, scores.numel(), done_units, dropped)
            chosen = _lowest(scores, k)
            dropped, done_units = dropped + k, done_units + scores.numel()
            mask1 = chosen[:, None, :, None].expand(rows // br, br, count // bc, bc).reshape(rows, count)
        else:
            mask1 = torch.zeros_like(w1, dtype=torch.bool)
        for i in range(count):
            w = w1[:, i]
            if config.structure == "mn" and i % config.n == 0:
                group = w1[:, i:i + config.n] ** 2 / d[None, i:i + config.n] ** 2
                drop = group.topk(config.n - config.m, dim=1, largest=False).indices
                mask1[:, i:i + config.n].scatter_(1, drop, True)
            q = w.clone()
            q[mask1[:, i]] = 0
            q1[:, i] = q
            err = (w - q) / hinv1[i, i]
            w1[:, i:] -= err[:, None] @ hinv1[i, i:][None, :]
            err1[:, i] = err
        w_[:, i1:i2] = q1
        w_[:, i2:] -= err1 @ hinv[i1:i2, i2:]
    return w_


@register
class SparseGPT(DataAware):
    name = "sparsegpt"
    description = "one-shot: calibration inputs choose the mask and reconstruct the kept weights (OBS)"
    order = 40

    def prune_weight(self, weight, hessian, config):
        return sparsegpt_weight(weight, hessian, config)
