"""Attention's batch matmuls on Intel AMX bf16 tiles, for int8 builds.

BERT's two attention matmuls per layer (``Q K^T`` and ``P V``: [heads, tokens, 64] x [heads, 64, tokens] and
[heads, tokens, tokens] x [heads, tokens, 64]) multiply two activations, so they stay outside the int8 Linear
kernels. In fp32 they were the largest cost after the sparse kernels in an int8 build (BERT-base, 90% in 16x4
blocks, Intel Xeon VM with AMX: 1.8 of 9.6 ms, ~335 GFLOP/s: AVX-512's fp32 peak on 2 cores). OpenVINO's int8
model runs them in bf16 on AMX tiles on this CPU (its default precision there), so the int8 comparison is fair
only when ours may do the same.

One task per batch entry (head), each:
- converts ``A[m, k]`` to bf16 row-major (round to nearest even, as ``torch.bfloat16`` does),
- converts and packs ``B[k, n]`` into the VNNI-bf16 layout ``BP[k/2, n]`` of 32-bit words (``BP[p, j]`` holds
  ``B[2p, j]`` in its low half and ``B[2p+1, j]`` in its high half),
- and multiplies with ``tdpbf16ps``: 16 x 32 bf16 (A) times 32 x 16 bf16 (B) into 16 x 16 float32 tiles, which are
  stored straight into ``C[m, n]`` (tile rows are output rows).

Products of bf16 values are exact in float32; sums are float32. So the only rounding against an fp32 matmul is the
inputs' (8 bits of mantissa): the model's int8 output moves by far less than int8 quantisation moves it (README).
"""

from __future__ import annotations

import functools
import operator
import os

from core.tvm import amx_bsr_kernel
from core.tvm.amx_bsr_kernel import _intrin

TILE = 16  # output rows and columns per C tile
K_STEP = 32  # bf16 values per A tile row (64 bytes)
MAX_C_TILES = 6  # C tiles per pass, plus one A and one B: at most 8 tile registers
ENV = "SPARSELAB_ATTENTION_BF16"  # "0" keeps attention's matmuls in float32 in int8 builds (comparisons, tests)


def cpu_has_amx_bf16() -> bool:
    from core.environment import cpu_info

    return cpu_info().has("amx_bf16")


def use_bf16(choice: bool | None = None) -> bool:
    """Whether int8 builds run attention's matmuls on AMX bf16: never when ``choice`` is False or ``ENV`` is
    0/false/no/off; otherwise when the CPU has AMX bf16 and Linux grants the tile state."""
    forced = os.environ.get(ENV, "").strip().lower()
    if choice is False or (choice is None and forced in ("0", "false", "no", "off")):
        return False
    return cpu_has_amx_bf16() and amx_bsr_kernel.enable_amx()


def supported(m: int, k: int, n: int) -> bool:
    return m % TILE == 0 and n % TILE == 0 and k % K_STEP == 0


def c_tiles(n: int) -> int:
    """C tiles per pass over one 16-row strip: the most (up to ``MAX_C_TILES``) that divide the column tiles."""
    columns = n // TILE
    return next(t for t in range(min(columns, MAX_C_TILES), 0, -1) if columns % t == 0)


def _bf16_bits(value):
    """float32 -> bf16 bits (in a uint32), rounded to nearest even as ``torch.bfloat16`` rounds (NaN inputs are not
    expected here)."""
    from tvm.script import tirx as T

    bits = T.reinterpret("uint32", value)
    return (bits + T.uint32(0x7FFF) + ((bits >> T.uint32(16)) & T.uint32(1))) >> T.uint32(16)


def _imm(value):  # a tile register number, folded to a constant by lowering
    from tvm.script import tirx as T

    return T.Cast("int8", value)


@functools.cache
def _tile_macros():
    """(configure, multiply): load a tile configuration of ``tiles`` 16 x 64-byte tiles; and C tiles
    ``0..columns-1`` = a 16-row strip of A (bf16, row-major, ``a_stride`` bytes per row) times ``columns`` 16-column
    tiles of B (VNNI bf16 pairs, ``b_stride`` bytes per row), over ``steps`` reductions of 32."""
    from tvm.script import tirx as T

    @T.macro
    def configure(cfg, tiles):
        for i in T.vectorized(64):
            cfg[i] = T.uint8(0)
        cfg[0] = T.uint8(1)  # palette 1
        for t in T.unroll(tiles):
            cfg[16 + 2 * t] = T.uint8(64)
            cfg[48 + t] = T.uint8(TILE)
        _intrin("ldtilecfg", T.address_of(cfg[0]))

    @T.macro
    def multiply(columns, a_reg, a, a_row, a_stride, b, b_column, b_stride, steps):
        for t in T.unroll(columns):
            _intrin("tilezero", _imm(t))
        for kc in range(steps):
            _intrin("tileloadd64", _imm(a_reg), T.address_of(a[a_row, kc * K_STEP]), T.int64(a_stride))
            for t in T.unroll(columns):
                _intrin("tileloadd64", _imm(a_reg + 1), T.address_of(b[kc * TILE, b_column + t * TILE]),
                        T.int64(b_stride))
                _intrin("tdpbf16ps", _imm(t), _imm(a_reg), _imm(a_reg + 1))

    return configure, multiply


def bf16_batch_matmul(batch: int, m: int, k: int, n: int):
    """PrimFunc ``(A[batch, m, k], B[batch, k, n]) -> C[batch, m, n]``, float32 in and out, bf16 products."""
    from tvm.script import tirx as T

    if not supported(m, k, n):
        raise ValueError(f"the AMX bf16 matmul needs rows and columns in multiples of {TILE} and a reduction in "
                         f"multiples of {K_STEP}, not {m} x {k} -> {n}")
    pairs, group = k // 2, c_tiles(n)
    configure, multiply = _tile_macros()
    bf16_bits = _bf16_bits

    @T.prim_func(private=True, s_tir=True)
    def kernel(a: T.Buffer((batch, m, k), "float32"), b: T.Buffer((batch, k, n), "float32"),
               c: T.Buffer((batch, m, n), "float32")):
        T.func_attr({"tirx.noalias": True, "tirx.is_scheduled": True})
        for h in T.parallel(batch):
            cfg = T.decl_buffer((64,), "uint8", scope="global")
            abf = T.decl_buffer((m, k), "uint16", scope="global")
            bpk = T.decl_buffer((pairs, n), "uint32", scope="global")
            for i in range(m):
                for j in T.vectorized(k):
                    abf[i, j] = T.Cast("uint16", bf16_bits(a[h, i, j]))
            for p in range(pairs):
                for j in T.vectorized(n):
                    bpk[p, j] = bf16_bits(b[h, 2 * p, j]) | (bf16_bits(b[h, 2 * p + 1, j]) << T.uint32(16))
            configure(cfg, group + 2)
            for strip in range(m // TILE):
                for g in range(n // (TILE * group)):
                    multiply(group, group, abf, strip * TILE, k * 2, bpk, g * group * TILE, n * 4, k // K_STEP)
                    for v in T.unroll(group):
                        _intrin("tilestored64", _imm(v), T.address_of(c[h, strip * TILE, (g * group + v) * TILE]),
                                T.int64(n * 4))
            _intrin("tilerelease")

    return kernel.with_attr("op_pattern", 8)


def attention_supported(seq: int, dim: int) -> bool:
    """Whether ``attention_kernel`` takes ``seq`` tokens per sequence and heads of ``dim``: the scores need
    ``dim`` in multiples of 32 and ``seq`` of 16, the context ``seq`` in multiples of 32 and ``dim`` of 16."""
    return seq % K_STEP == 0 and dim % K_STEP == 0 and dim // TILE + 2 <= 8


def attention_kernel(batch: int, heads: int, seq: int, dim: int, mask_batch: int, q_scale: float, k_scale: float):
    """Fused self-attention on AMX bf16: PrimFunc ``(Q, K, V [batch * seq, heads * dim], mask [mask_batch, seq,
    seq]) -> context [batch * seq, heads * dim]``, all float32.

    ``context = softmax(q_scale Q_h (k_scale K_h)^T + mask) V_h`` per sequence and head, read from and written to the
    Linear layers' own layout (token rows, head ``h`` in columns ``h * dim ..``), so the head split and merge
    transposes, the scores' round trip through memory and the separate softmax and mask passes are gone. The
    scaled Q and K, the probabilities and V are rounded to bf16 (as ``bf16_batch_matmul`` rounds its inputs);
    scores, softmax and sums stay float32. A row whose scores are all -inf gives zeros, as transformers'
    attention does (``fast_math.fold_masked_softmax_pass``). One task per sequence and head; per 16-query strip:
    the scores into a 16 x seq float32 buffer (AMX), the mask and softmax row by row (AVX-512, TOPI's fast exp),
    the probabilities as a bf16 tile row, then the context tiles (AMX) stored straight into the output."""
    from tvm.script import tirx as T

    from core.tvm.fast_math import _fast_exp, across_lanes

    if not attention_supported(seq, dim):
        raise ValueError(f"the AMX attention kernel needs sequences and head sizes in multiples of {K_STEP} "
                         f"(and heads of at most 96), not {seq} tokens x {dim}")
    if mask_batch not in (1, batch):
        raise ValueError(f"the mask covers {mask_batch} sequences, not 1 or {batch}")
    tokens, width, pairs = batch * seq, heads * dim, dim // 2
    group = c_tiles(seq)  # score tiles per pass
    d_tiles = dim // TILE  # context tiles per strip (scores: ``group`` per pass); A and B follow the C tiles
    lanes, chunks = TILE, seq // TILE
    per_mask = 1 if mask_batch == batch else 0

    configure, multiply = _tile_macros()
    bf16_bits = _bf16_bits

    @T.prim_func(private=True, s_tir=True)
    def kernel(q: T.Buffer((tokens, width), "float32"), k: T.Buffer((tokens, width), "float32"),
               v: T.Buffer((tokens, width), "float32"), mask: T.Buffer((mask_batch, seq, seq), "float32"),
               out: T.Buffer((tokens, width), "float32")):
        T.func_attr({"tirx.noalias": True, "tirx.is_scheduled": True})
        for task in T.parallel(batch * heads):
            cfg = T.decl_buffer((64,), "uint8", scope="global")
            qbf = T.decl_buffer((seq, dim), "uint16", scope="global")  # A of the scores: Q_h rows
            kbf = T.decl_buffer((seq, dim), "uint16", scope="global")  # K_h rows, then transposed as words:
            kpk = T.decl_buffer((pairs, seq), "uint32", scope="global")  # B of the scores: (K[n, 2p], K[n, 2p+1])
            vpk = T.decl_buffer((seq // 2, dim), "uint32", scope="global")  # B of the context: (V[2p, d], V[2p+1, d])
            scores = T.decl_buffer((TILE, seq), "float32", scope="global")
            probs = T.decl_buffer((TILE, seq), "uint16", scope="global")  # A of the context
            stats = T.decl_buffer((lanes,), "float32", scope="global")
            total = T.decl_buffer((2,), "float32", scope="global")  # a row's max, then 1 / sum
            kwords = T.decl_buffer((seq, pairs), "uint32", data=kbf.data)
            b = T.meta_var(task // heads)
            col = T.meta_var((task % heads) * dim)
            for i in range(seq):
                for j in T.vectorized(dim):
                    qbf[i, j] = T.Cast("uint16", bf16_bits(q[b * seq + i, col + j] * T.float32(q_scale)))
                    kbf[i, j] = T.Cast("uint16", bf16_bits(k[b * seq + i, col + j] * T.float32(k_scale)))
            for n in range(seq):
                for p in range(pairs):
                    kpk[p, n] = kwords[n, p]
            for p in range(seq // 2):
                for j in T.vectorized(dim):
                    vpk[p, j] = (bf16_bits(v[b * seq + 2 * p, col + j])
                                 | (bf16_bits(v[b * seq + 2 * p + 1, col + j]) << T.uint32(16)))
            configure(cfg, 8)
            for strip in range(seq // TILE):
                for g in range(chunks // group):  # scores of 16 queries x every key
                    multiply(group, group, qbf, strip * TILE, dim * 2, kpk, g * group * TILE, seq * 4, dim // K_STEP)
                    for t in T.unroll(group):
                        _intrin("tilestored64", _imm(t), T.address_of(scores[0, (g * group + t) * TILE]),
                               T.int64(seq * 4))
                for r in range(TILE):  # mask and softmax, row by row; probabilities to bf16
                    row = T.meta_var(strip * TILE + r)
                    for lane in T.vectorized(lanes):
                        scores[r, lane] = scores[r, lane] + mask[b * per_mask, row, lane]
                        stats[lane] = scores[r, lane]
                    for c in range(1, chunks):
                        for lane in T.vectorized(lanes):
                            scores[r, c * lanes + lane] = scores[r, c * lanes + lane] + mask[b * per_mask, row,
                                                                                             c * lanes + lane]
                            stats[lane] = T.max(stats[lane], scores[r, c * lanes + lane])
                    total[0] = across_lanes(stats, lanes, T.max)
                    if total[0] == T.float32("-inf"):
                        for c in range(chunks):
                            for lane in T.vectorized(lanes):
                                probs[r, c * lanes + lane] = T.uint16(0)
                    else:
                        for lane in T.vectorized(lanes):
                            stats[lane] = T.float32(0)
                        for c in range(chunks):
                            for lane in T.vectorized(lanes):
                                scores[r, c * lanes + lane] = _fast_exp(scores[r, c * lanes + lane] - total[0])
                                stats[lane] = stats[lane] + scores[r, c * lanes + lane]
                        total[1] = T.float32(1) / across_lanes(stats, lanes, operator.add)
                        for c in range(chunks):
                            for lane in T.vectorized(lanes):
                                probs[r, c * lanes + lane] = T.Cast(
                                    "uint16", bf16_bits(scores[r, c * lanes + lane] * total[1]))
                multiply(d_tiles, d_tiles, probs, 0, seq * 2, vpk, 0, dim * 4, seq // K_STEP)  # the context
                for t in T.unroll(d_tiles):
                    _intrin("tilestored64", _imm(t), T.address_of(out[b * seq + strip * TILE, col + t * TILE]),
                           T.int64(width * 4))
            _intrin("tilerelease")

    return kernel.with_attr("op_pattern", 8)
