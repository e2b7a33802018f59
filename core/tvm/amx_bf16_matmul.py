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

import os

from core.tvm import amx_bsr_kernel

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


def bf16_batch_matmul(batch: int, m: int, k: int, n: int):
    """PrimFunc ``(A[batch, m, k], B[batch, k, n]) -> C[batch, m, n]``, float32 in and out, bf16 products."""
    from tvm.script import tirx as T

    if not supported(m, k, n):
        raise ValueError(f"the AMX bf16 matmul needs rows and columns in multiples of {TILE} and a reduction in "
                         f"multiples of {K_STEP}, not {m} x {k} -> {n}")
    pairs, group = k // 2, c_tiles(n)
    a_reg, b_reg = group, group + 1

    def imm(value):  # a tile register number, folded to a constant by lowering
        return T.Cast("int8", value)

    def intrin(name, *args):
        return T.evaluate(T.call_llvm_intrin("void", f"llvm.x86.{name}", *args))

    def bf16_bits(value):  # float32 -> bf16 bits, round to nearest even (NaN inputs are not expected here)
        bits = T.reinterpret("uint32", value)
        return (bits + T.uint32(0x7FFF) + ((bits >> T.uint32(16)) & T.uint32(1))) >> T.uint32(16)

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
            for i in T.vectorized(64):
                cfg[i] = T.uint8(0)
            cfg[0] = T.uint8(1)  # palette 1; every tile 16 rows of 64 bytes
            for t in T.unroll(group + 2):
                cfg[16 + 2 * t] = T.uint8(64)
                cfg[48 + t] = T.uint8(TILE)
            intrin("ldtilecfg", T.address_of(cfg[0]))
            for strip in range(m // TILE):
                for g in range(n // (TILE * group)):
                    for v in T.unroll(group):
                        intrin("tilezero", imm(v))
                    for kc in range(k // K_STEP):
                        intrin("tileloadd64", imm(a_reg), T.address_of(abf[strip * TILE, kc * K_STEP]),
                               T.int64(k * 2))
                        for v in T.unroll(group):
                            intrin("tileloadd64", imm(b_reg),
                                   T.address_of(bpk[kc * TILE, (g * group + v) * TILE]), T.int64(n * 4))
                            intrin("tdpbf16ps", imm(v), imm(a_reg), imm(b_reg))
                    for v in T.unroll(group):
                        intrin("tilestored64", imm(v), T.address_of(c[h, strip * TILE, (g * group + v) * TILE]),
                               T.int64(n * 4))
            intrin("tilerelease")

    return kernel.with_attr("op_pattern", 8)
