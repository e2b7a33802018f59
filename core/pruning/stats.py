"""What a pruning did, layer by layer: the numbers behind the Prune page's bars and heatmap."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np

from core.model_source import linear_layers
from core.pruning.block import block_sparsity


@dataclass(frozen=True)
class LayerSparsity:
    """One Linear layer's zeros; ``block_sparsity`` is None where the block does not divide the shape."""

    name: str
    shape: tuple[int, int]
    zeros: int
    sparsity: float
    block_sparsity: float | None
    selected: bool

    @property
    def size(self) -> int:
        return self.shape[0] * self.shape[1]

    def as_dict(self) -> dict:
        return {**asdict(self), "shape": list(self.shape)}


def layer_sparsities(model, block: tuple[int, int], selected: Iterable[str] = ()) -> list[LayerSparsity]:
    """Element and block sparsity of every Linear layer; ``selected`` names the pruned ones."""
    selected = set(selected)
    result = []
    for name, module in linear_layers(model).items():
        weight = module.weight.detach()
        zeros = int((weight == 0).sum())
        result.append(LayerSparsity(name=name, shape=tuple(weight.shape), zeros=zeros,
                                    sparsity=zeros / weight.numel(), block_sparsity=block_sparsity(weight, block),
                                    selected=name in selected))
    return result


def linear_sparsity(model) -> float:
    """Fraction of zeros over every Linear weight of ``model`` (including any a compiled graph does not use)."""
    weights = [module.weight for module in linear_layers(model).values()]
    return float(sum(int((w == 0).sum()) for w in weights) / max(1, sum(w.numel() for w in weights)))


def overall_sparsity(layers: Iterable[LayerSparsity]) -> float:
    """Zeros over weights, pooled over ``layers`` (so big layers weigh more)."""
    layers = list(layers)
    return sum(l.zeros for l in layers) / max(1, sum(l.size for l in layers))


@dataclass(frozen=True)
class Heatmap:
    """A window of a weight, 1 where nonzero, with the block borders that cross it.

    ``row_lines``/``col_lines`` are border positions in cell coordinates (cell i
    spans i - 0.5 .. i + 0.5), ready to draw; a block size of 1 has none.
    """

    mask: np.ndarray
    row_start: int
    col_start: int
    row_lines: list[float]
    col_lines: list[float]


def _borders(start: int, length: int, block_size: int) -> list[float]:
    if block_size == 1:
        return []
    return [i - 0.5 for i in range(1, length) if (start + i) % block_size == 0]


def heatmap(weight, block: tuple[int, int], row_start: int = 0, col_start: int = 0,
            rows: int = 64, cols: int = 64) -> Heatmap:
    """The nonzero pattern of ``weight[row_start:+rows, col_start:+cols]`` (clipped to the weight)."""
    window = weight.detach()[row_start:row_start + rows, col_start:col_start + cols]
    mask = (window != 0).numpy().astype(np.uint8)
    return Heatmap(mask=mask, row_start=row_start, col_start=col_start,
                   row_lines=_borders(row_start, mask.shape[0], block[0]),
                   col_lines=_borders(col_start, mask.shape[1], block[1]))
