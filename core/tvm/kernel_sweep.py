"""One layer's BSR kernel across block shapes and sparsities, against PyTorch's dense Linear.

Random block-sparse weights (what-if): kernel speed depends on how many blocks
of which shape are stored, not on their values. Data for the sweep chart.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from core.timing import measure
from core.tvm.bsr_format import to_bsr
from core.tvm.bsr_kernel import BsrKernelShape, build_kernel, default_schedule, output_shape
from core.tvm.bsr_rewrite import BSR_BLOCKS
from core.tvm.target import host_target, measure_tvm, set_runtime_threads

BLOCKS = BSR_BLOCKS
SPARSITIES = (0.7, 0.8, 0.9, 0.95, 0.98)


@dataclass(frozen=True)
class SweepPoint:
    block: str
    sparsity: float
    schedule: str
    tvm_ms: float
    tvm_std_ms: float
    torch_dense_ms: float
    speedup: float

    def as_dict(self) -> dict:
        return asdict(self)


def sweep(layer: tuple[int, int] = (768, 768), tokens: int = 128, blocks=BLOCKS, sparsities=SPARSITIES,
          threads: int = 1, repeats: int = 20, seed: int = 0) -> list[SweepPoint]:
    """``layer`` is (out_features, in_features); X is ``tokens x in_features``."""
    import torch
    import tvm

    from core.pruning.random_weights import random_block_sparse

    n, k = layer
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((tokens, k)).astype(np.float32)
    dense_weight = torch.from_numpy(rng.standard_normal((n, k)).astype(np.float32))
    x_torch = torch.from_numpy(x)
    torch_ms = measure(lambda: torch.nn.functional.linear(x_torch, dense_weight), threads=threads,
                       repeats=repeats).median_ms
    set_runtime_threads(threads)
    device, target, points = tvm.cpu(), host_target(threads), []
    lhs = tvm.runtime.tensor(np.ascontiguousarray(x.T), device)
    for block in blocks:
        shape = BsrKernelShape(tokens, k, n, block)
        schedule = default_schedule(shape)
        kernel = build_kernel(shape, schedule, target)
        out = tvm.runtime.tensor(np.zeros(output_shape(shape, schedule), np.float32), device)
        for sparsity in sparsities:
            bsr = to_bsr(random_block_sparse((n, k), sparsity, block, seed=seed), block)
            arrays = [tvm.runtime.tensor(a, device) for a in (bsr.data, bsr.indices, bsr.indptr)]
            timing = measure_tvm(lambda: kernel(lhs, *arrays, out), threads=threads, repeats=repeats)
            points.append(SweepPoint(f"{block[0]}x{block[1]}", sparsity, schedule.label, timing.median_ms,
                                     timing.std_ms, torch_ms, torch_ms / timing.median_ms))
    return points
