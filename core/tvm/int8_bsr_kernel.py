"""The int8 BSR x dense kernel with AVX-512 VNNI, for blocks that span 4 input columns (16x4, 4x4, 1x4).

The oBERT / DeepSparse "4-block" recipe prunes blocks of 4 consecutive input
features: 4 u8 activations x 4 s8 weights is exactly one 32-bit lane of
``vpdpbusd`` (16 lanes of int32 += u8[4] . s8[4]). Input is the packed activation
``XP[K/4, M, 4]`` (``core.tvm.quantize``); a stored block's data is its
``[rows, 4]`` int8 values, row-major (``data[nnz, rows, 4]``). Two variants, as
for the fp32 kernel, by which axis fills the 16 lanes:

- ``rows`` (block rows a multiple of 16, e.g. 16x4): one block = 64 bytes = the
  s8 operand of one vpdpbusd per 16 rows; each token of a ``tile`` broadcasts its
  u8x4 word (``XP[c, t]``) and issues one vpdpbusd. Writes ``Y[M, N]``.
- ``tokens`` (1x4, 2x4, 4x4, 8x4): the 16 lanes are 16 consecutive tokens: one
  64-byte load of ``XP[c, t:t+16, :]`` is the u8 operand, each block row's 4
  weights are broadcast as the s8 operand. ``tile`` tokens (up to 128) x block
  rows of accumulators. Writes ``YT[N, M]`` (the rewrite transposes it back, as for
  the fp32 ``tokens`` kernel; writing ``Y`` directly scatters every result).

Both variants parallelise over token tiles when there are two or more (``TOKEN_SPLIT_TILES``), else over block
rows; a block row's stored-block count is data dependent (``indptr``), the stored-block total
is symbolic, so layers of one shape share one kernel. The epilogue dequantises (``core.tvm.quantize``) in float32.
``vnni=False`` is the plain int32 fallback (bit-identical; see int8_dense_kernel).

Measured (benchmarks/tvm_int8.py, 1 thread, 128 tokens, 90% random blocks, ms for
768x768 / 768->3072 / 3072->768): 16x4 0.039 / 0.162 / 0.142; 4x4 0.051 / 0.203 /
0.153; 1x4 0.099 / 0.398 / 0.333. Same run: fp32 BSR 16x1 @90% 0.137 / 0.563 /
0.559, fp32 dense 1.36 on 768x768, int8 dense 0.33.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.tvm import bsr_format, quantize
from core.tvm.epilogue import without_params
from core.tvm.int8_dense_kernel import LANES, RAW_UNUSED, int8_macros, use_vnni, vpdpbusd, word_broadcast

_MAX_ACCUMULATORS = 16  # zmm registers of int32 accumulators per register tile
# Kernels with at least this many token tiles run them as the parallel tasks, each over every block row: each
# thread then writes every feature of its tokens, and the token-parallel ops around the kernel (quantisation,
# layer norm, GELU) read what their own core wrote. ``rows``: BERT-base int8, 90% 16x4, VNNI (AMX off), 2 threads,
# Intel Xeon VM, interleaved processes: 13.3-14.1 ms against 16.0-16.7 ms split by block rows. ``tokens`` (session
# 15): tiles of at most 64 tokens, so 128 tokens make two tasks. BERT-base's three shapes alone, 2 threads, random
# 1x4 blocks, quiet-round medians: at 0.9 768x768 / 768->3072 / 3072->768 0.057 / 0.206 / 0.128 ms against
# 0.073 / 0.235 / 0.183 with one 128-token tile split by block rows (-21% per encoder layer), at 0.95 -25%, at 0.8
# -12% (768x768 alone +3%); 4x4 at 0.9 -11%, 0.95 -14%, 0.8 +3%.
TOKEN_SPLIT_TILES = 2


@dataclass(frozen=True)
class Int8BsrShape:
    m: int  # tokens, a multiple of 16
    k: int
    n: int
    block: tuple[int, int]

    @property
    def block_rows_count(self) -> int:
        return self.n // self.block[0]


@dataclass(frozen=True)
class Int8BsrSchedule:
    variant: str  # "rows" or "tokens"
    tile: int  # tokens per register tile
    vnni: bool
    by_tokens: bool = False  # parallel tasks are token tiles (each thread: every feature of its tokens)

    @property
    def label(self) -> str:
        split = "/by-tokens" if self.by_tokens else ""
        return f"int8-{self.variant}/{self.tile}{'' if self.vnni else '/novnni'}{split}"


def supported_block(block: tuple[int, int]) -> bool:
    rows, cols = block
    return cols == 4 and (rows % LANES == 0 or rows in (1, 2, 4, 8))


def default_schedule(shape: Int8BsrShape, vnni: bool | None = None) -> Int8BsrSchedule:
    rows = shape.block[0]
    vnni = use_vnni(vnni)
    if rows % LANES == 0:
        vectors = rows // LANES
        tile = next(t for t in (8, 4, 2, 1) if shape.m % t == 0 and t * vectors <= _MAX_ACCUMULATORS)
        return Int8BsrSchedule("rows", tile, vnni, by_tokens=shape.m // tile >= TOKEN_SPLIT_TILES)
    tile = next(t for t in (64, 32, 16) if shape.m % t == 0 and rows * t // LANES <= _MAX_ACCUMULATORS)
    return Int8BsrSchedule("tokens", tile, vnni, by_tokens=shape.m // tile >= TOKEN_SPLIT_TILES)


def output_shape(shape: Int8BsrShape, schedule: Int8BsrSchedule) -> tuple[int, int]:
    return (shape.n, shape.m) if schedule.variant == "tokens" else (shape.m, shape.n)


@dataclass(frozen=True)
class Int8Bsr:
    """A weight quantised per output row and stored as int8 BSR."""

    shape: tuple[int, int]
    block: tuple[int, int]
    data: np.ndarray  # int8 [nnz, rows, 4]
    indices: np.ndarray  # int32 [nnz]
    indptr: np.ndarray  # int32 [n / rows + 1]
    scale: np.ndarray  # float32 [n]
    sums: np.ndarray  # int32 [n]: row sums (times a token's zero point: what to take back)

    @property
    def nnz_blocks(self) -> int:
        return int(self.indices.shape[0])

    def to_dense(self) -> np.ndarray:
        """The int8 weight ``[N, K]`` (tests)."""
        float_form = bsr_format.BsrMatrix(self.shape, self.block, self.data.transpose(0, 2, 1).astype(np.float32),
                                          self.indices, self.indptr)
        return float_form.to_dense().astype(np.int8)


def to_int8_bsr(weight: np.ndarray, block: tuple[int, int]) -> Int8Bsr:
    """Quantise ``weight`` per output row (symmetric int8) and store it in BSR with ``block``."""
    qweight, scale = quantize.quantize_weight(weight)
    return int8_bsr_of_quantized(qweight, scale, block)


def int8_bsr_of_quantized(qweight: np.ndarray, scale: np.ndarray, block: tuple[int, int]) -> Int8Bsr:
    bsr = bsr_format.to_bsr(qweight.astype(np.float32), block)  # exact: int8 values are floats
    data = np.ascontiguousarray(bsr.data.transpose(0, 2, 1)).astype(np.int8)
    return Int8Bsr(tuple(qweight.shape), tuple(block), data, bsr.indices, bsr.indptr, scale.astype(np.float32),
                   quantize.weight_sums(qweight))


def bsr_int8_matmul(shape: Int8BsrShape, schedule: Int8BsrSchedule, *, dequantize: bool = True):
    """PrimFunc ``(XP, x_params, data, indices, indptr, w_scale, sums) -> Y`` (rows) / ``YT`` (tokens) float32;
    with ``dequantize=False``: ``(XP, data, indices, indptr) -> int32`` accumulations (exact tests)."""
    from tvm.script import tirx as T

    m, k = shape.m, shape.k
    rows, _ = shape.block
    groups, block_rows = k // 4, shape.block_rows_count
    tile, vnni = schedule.tile, schedule.vnni
    out_shape, out_dtype = output_shape(shape, schedule), ("float32" if dequantize else "int32")

    zero, store = int8_macros(dequantize=dequantize)

    # Both variants fill acc[(a * inner + b) * 16 + lane] for a in range(outer), b in range(inner):
    # rows:   a = token of the tile, b = 16-row slice of the block; X's 4 bytes of token a are broadcast,
    #         the block's 16 rows x 4 columns are one vector; out[token, feature] (row-major Y)
    # tokens: a = row of the block,  b = 16-token slice of the tile; the row's 4 weights are broadcast,
    #         X's 16 tokens x 4 bytes are one vector; out[feature, token] (Y^T)
    rows_variant = schedule.variant == "rows"
    inner = rows // LANES if rows_variant else tile // LANES
    outer = tile if rows_variant else rows

    def x_word_or_vector(xp, c, token0, a, b):
        if rows_variant:
            return word_broadcast(xp.vload([c, token0 + a, 0], "uint8x4"))
        return T.reinterpret("int8x64", xp.vload([c, token0 + b * LANES, 0], "uint8x64"))

    def w_vector_or_word(data, block, a, b):
        if rows_variant:
            return data.vload([block, b * LANES, 0], "int8x64")
        return word_broadcast(data.vload([block, a, 0], "int8x4"))

    def x_byte(xp, c, token0, a, b, lane, q):
        return T.Cast("int32", xp[c, token0 + a, q] if rows_variant else xp[c, token0 + b * LANES + lane, q])

    def w_byte(data, block, a, b, lane, q):
        return T.Cast("int32", data[block, b * LANES + lane, q] if rows_variant else data[block, a, q])

    @T.macro  # block row i x token tile to: accumulate its stored blocks, then store
    def one_tile(i, to, xp, data, indices, indptr, out, x_params, w_scale, sums):
        acc = T.decl_buffer((outer * inner * LANES,), "int32", scope="global")
        zero(acc, outer * inner)
        start: T.int32 = indptr[i]
        for j in range(indptr[i + 1] - start):
            c: T.int32 = indices[start + j]
            for a in T.unroll(outer):
                for b in T.unroll(inner):
                    slot = T.meta_var((a * inner + b) * LANES)
                    if vnni:
                        acc[T.ramp(slot, 1, LANES)] = vpdpbusd(acc[T.ramp(slot, 1, LANES)],
                                                               x_word_or_vector(xp, c, to * tile, a, b),
                                                               w_vector_or_word(data, start + j, a, b))
                    else:
                        for q in T.unroll(4):
                            for lane in T.vectorized(LANES):
                                acc[slot + lane] = acc[slot + lane] \
                                    + x_byte(xp, c, to * tile, a, b, lane, q) \
                                    * w_byte(data, start + j, a, b, lane, q)
        for a in T.unroll(outer):
            for b in T.unroll(inner):
                if rows_variant:  # Y[token, feature]
                    store(out, x_params, w_scale, sums, to * tile + a, i * rows + b * LANES, acc,
                          (a * inner + b) * LANES, True)
                else:  # Y^T[feature, token]
                    store(out, x_params, w_scale, sums, i * rows + a, to * tile + b * LANES, acc,
                          (a * inner + b) * LANES, False)

    @T.prim_func(private=True, s_tir=True)
    def kernel(xp: T.Buffer((groups, m, 4), "uint8"), x_params: T.Buffer((2, m), "float32"),
               data_handle: T.handle, indices_handle: T.handle, indptr: T.Buffer((block_rows + 1,), "int32"),
               w_scale: T.Buffer((shape.n,), "float32"), sums: T.Buffer((shape.n,), "int32"),
               out: T.Buffer(out_shape, out_dtype)):
        nnz = T.int32()
        data = T.match_buffer(data_handle, (nnz, rows, 4), "int8")
        indices = T.match_buffer(indices_handle, (nnz,), "int32")
        T.func_attr({"tirx.noalias": True, "tirx.is_scheduled": True})
        if schedule.by_tokens:
            for to in T.parallel(m // tile):
                for i in range(block_rows):
                    one_tile(i, to, xp, data, indices, indptr, out, x_params, w_scale, sums)
        else:
            for i in T.parallel(block_rows):
                for to in range(m // tile):
                    one_tile(i, to, xp, data, indices, indptr, out, x_params, w_scale, sums)

    return without_params(kernel, () if dequantize else RAW_UNUSED).with_attr("op_pattern", 8)
