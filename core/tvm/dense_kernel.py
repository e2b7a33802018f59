"""The dense Linear kernel in TIR: ``Y[M, N] = X[M, K] @ W[N, K]^T`` with W pre-packed.

The weight is a compile-time constant, so it is packed once into panels
``Wp[N / lanes, K, lanes]``: the inner loop then streams one contiguous panel
while a ``tile x lanes`` block of Y stays in vector registers (broadcast X,
fused multiply-add). Outer (panel, token tile) pairs run in parallel, panel-major: each thread streams
its share of the panels once and runs every token tile against a panel while it is in L2.

Measured (session 6, Intel Xeon Emerald Rapids, 2 threads, 128 tokens, one run): panel-major 1.019 / 3.902 /
4.010 ms for 768x768 / 768->3072 / 3072->768, token-tile-major 1.224 / 5.401 / 5.321 ms (1.2-1.38x); torch's
oneDNN matmul runs 768->3072 at the same 155-159 GFLOP/s. On AMD Zen 4 (session 5) the order made no
difference (116.0 vs 117.2 ms for BERT-base): its L3 fed the weight fast enough either way.

An ``epilogue`` (bias, GELU, residual: ``core.tvm.epilogue``) is applied in the store of each register tile. AMD
Zen 5, session 9: 768x768 at 219 GFLOP/s on one thread, ~420 on two; BERT-base fp32 55.6 -> 54.7 ms with the
epilogues folded in (interleaved rounds), the separate bias/GELU/residual passes (~1.2 ms) gone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.tvm.epilogue import NONE as NO_EPILOGUE
from core.tvm.epilogue import Epilogue


@dataclass(frozen=True)
class DenseSchedule:
    lanes: int  # output features per panel (the vector axis)
    tile: int  # tokens per register tile

    @property
    def label(self) -> str:
        return f"dense/{self.lanes}x{self.tile}"


def default_schedule(m: int, n: int) -> DenseSchedule:
    """32 features x 8 tokens: 16 AVX-512 accumulators (8 x 2 zmm), two stack buffers of 512 bytes."""
    lanes = next(l for l in (32, 16, 8, 4, 2, 1) if n % l == 0)
    tile = next(t for t in (8, 4, 2, 1) if m % t == 0 and t * lanes * 4 <= 1024)
    return DenseSchedule(lanes, tile)


def pack_weight(weight: np.ndarray, lanes: int) -> np.ndarray:
    """``W[N, K]`` -> ``Wp[N / lanes, K, lanes]``."""
    n, k = weight.shape
    return np.ascontiguousarray(weight.reshape(n // lanes, lanes, k).transpose(0, 2, 1), dtype=np.float32)


def dense_matmul(m: int, k: int, n: int, schedule: DenseSchedule, epilogue: Epilogue = NO_EPILOGUE):
    """The PrimFunc ``(X, Wp[, bias][, residual]) -> Y``; ``epilogue`` (``core.tvm.epilogue``) is applied to each
    register tile as it is stored.

    Each (panel, token tile) task keeps its ``tile x lanes`` accumulator in two buffers of at most 512 bytes: TVM
    0.27 puts a buffer under 1 KB on the stack, where LLVM keeps it in registers even with the prefetch call in
    the loop (one 1 KB buffer goes to the heap, and the call then forces a store of every accumulator per step).
    Every step of the reduction also prefetches (into L2) a part of the *next* panel, spread so that the panel's
    token tiles together fetch all of it: within the model each panel is read from L3 once, and without the
    prefetch the first token tile of every panel waited for it. Measured (session 14, Intel Xeon with AMX, 2
    threads, BERT-base's 72 Linears with distinct weights, alternating processes, medians): 82-88 ms without,
    67-73 ms with; torch's oneDNN matmul 80-86 ms on the same sequence."""
    from tvm.script import tirx as T

    lanes, tile = schedule.lanes, schedule.tile
    panels, tiles = n // lanes, m // tile
    half = max(lanes // 2, 1)
    second = lanes > 1  # the second half's accumulator

    @T.prim_func(private=True)
    def kernel(x: T.Buffer((m, k), "float32"), wp: T.Buffer((panels, k, lanes), "float32"),
               bias: T.Buffer((n,), "float32"), residual: T.Buffer((m, n), "float32"),
               y: T.Buffer((m, n), "float32")):
        T.func_attr({"tirx.noalias": True})
        for task in T.parallel(panels * tiles):
            low = T.decl_buffer((tile, half), "float32", scope="global")
            high = T.decl_buffer((tile, half), "float32", scope="global")
            panel = T.meta_var(task // tiles)
            token0 = T.meta_var(task % tiles * tile)
            for t in T.unroll(tile):
                for lane in T.vectorized(half):
                    low[t, lane] = T.float32(0)
                    if second:
                        high[t, lane] = T.float32(0)
            for r in range(k):
                ahead = T.meta_var((task % tiles * k + r) * lanes // tiles)  # element of the next panel
                T.evaluate(T.call_llvm_intrin("void", "llvm.prefetch.p0", T.address_of(
                    wp[T.min(panel + 1, panels - 1), ahead // lanes, ahead % lanes]), 0, 2, 1))
                for t in T.unroll(tile):
                    for lane in T.vectorized(half):
                        low[t, lane] = low[t, lane] + x[token0 + t, r] * wp[panel, r, lane]
                        if second:
                            high[t, lane] = high[t, lane] + x[token0 + t, r] * wp[panel, r, half + lane]
            for t in range(tile):
                for lane in T.vectorized(half):
                    y[token0 + t, panel * lanes + lane] = epilogue.applied(
                        low[t, lane], token0 + t, panel * lanes + lane, bias, residual)
                    if second:
                        y[token0 + t, panel * lanes + half + lane] = epilogue.applied(
                            high[t, lane], token0 + t, panel * lanes + half + lane, bias, residual)

    # opaque: FuseOps must not merge it with anything, which would drop this schedule
    return epilogue.trimmed(kernel).with_attrs({"tirx.is_scheduled": True, "op_pattern": 8})
