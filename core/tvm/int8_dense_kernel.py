"""The dense int8 Linear kernel: ``Y[M, N] = dequant(XP(u8) . Wp(s8))`` with AVX-512 VNNI.

Inputs (see ``core.tvm.quantize`` for the quantisation): the activation packed
``XP[K/4, M, 4]`` u8 with each token's scale and zero point ``x_params[2, M]``, the weight packed
``Wp[N/16, K/4, 16, 4]`` s8 (one 64-byte panel slice = 16 output features x 4
inputs, exactly the s8 operand of one ``vpdpbusd``), per-row weight scales and
the row sums ``sums[n] = sum_k W[n, k]`` (times a token's zero point: what to take back). Register tile: ``tile``
tokens x ``panels`` x 16 features of int32 accumulators; per 4-input step the
kernel broadcasts one u8x4 word per token and issues ``tile * panels`` vpdpbusd.
The epilogue dequantises in float32 and writes ``Y[M, N]``. Parallel over
(token tile, panel group). Panel-major order, which made the fp32 kernel 1.2-1.38x faster on an Intel Xeon
(``dense_kernel``), made no difference here beyond noise (2 runs each, 2 threads: 0.37-0.39 vs 0.32-0.34 ms
for 768x768, 1.36-1.62 vs 1.43-1.62 ms for 768->3072): int8 weights are a quarter the size, all in L2.

``vpdpbusd`` is emitted directly with ``T.call_llvm_pure_intrin`` (not tensorize):
the loop nest is hand-written like the BSR kernel's. TVM 0.27's own
``dot_16x4_vnni`` intrinsic passes i32x16 operands, which the bundled LLVM's
``llvm.x86.avx512.vpdpbusd.512`` (now ``<16 x i32>, <64 x i8>, <64 x i8>``) rejects
("Call parameter type does not match function signature"), so the operands here are
``int8x64`` vectors.

Fallback (``vnni=False``: CPUs without ``avx512_vnni``, or forced with
``SPARSELAB_INT8_VNNI=0``): the same loop nest with plain int32 multiply-adds that
LLVM vectorises; bit-identical results.

Measured (benchmarks/tvm_int8.py, 1 thread, 128 tokens, interleaved with the fp32
kernels; docs/tvm.md "int8 and VNNI"): 768x768 0.33 ms (fp32 dense 1.36 ms: 4.1x),
768->3072 1.35 ms, 3072->768 1.32 ms: ~1 vpdpbusd per cycle. Tiles 8x16, 4x32 and
8x32 are within 5% of each other.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import numpy as np

from core.tvm import quantize
from core.tvm.epilogue import NONE as NO_EPILOGUE
from core.tvm.epilogue import Epilogue

VNNI_ENV = "SPARSELAB_INT8_VNNI"  # "0" forces the fallback kernels (tests, CPUs without VNNI)
VPDPBUSD = "llvm.x86.avx512.vpdpbusd.512"
LANES = 16  # int32 accumulators per zmm = output features per vpdpbusd
RAW_UNUSED = ("x_params", "w_scale", "sums")  # parameters a dequantize=False (raw int32) variant does without


def use_vnni(vnni: bool | None = None) -> bool:
    """Whether to emit vpdpbusd: an explicit choice, else ``SPARSELAB_INT8_VNNI``, else the host's CPU flags.

    Only the 512-bit AVX-512 VNNI form is emitted; a CPU with only AVX-VNNI (256-bit) takes the fallback."""
    if vnni is not None:
        return vnni
    forced = os.environ.get(VNNI_ENV)
    if forced is not None and forced.strip() != "":
        return forced.strip().lower() not in ("0", "false", "no", "off")
    return cpu_has_vnni()


def cpu_has_vnni() -> bool:
    """The host CPU reports ``avx512_vnni`` (/proc/cpuinfo flags, ``core.environment``)."""
    from core.environment import cpu_info

    return cpu_info().has("avx512_vnni")


@dataclass(frozen=True)
class Int8DenseSchedule:
    tile: int  # tokens per register tile
    panels: int  # 16-feature panels per register tile
    vnni: bool

    @property
    def label(self) -> str:
        return f"int8-dense/{self.tile}x{self.panels * LANES}{'' if self.vnni else '/novnni'}"


def supported(k: int, n: int) -> bool:
    return k % 4 == 0 and n % LANES == 0


def default_schedule(m: int, n: int, vnni: bool | None = None) -> Int8DenseSchedule:
    """8 tokens x 32 features: 16 zmm accumulators (1 KB, the most that stays on the stack).

    AMD Zen 5 issues two 512-bit vpdpbusd per cycle, so 8 accumulators (8 x 16, the default before) left half of
    it idle: interleaved rounds, 2 threads, 128 tokens, session 9: 768x768 0.134 -> 0.099 ms, 768->3072 0.596 ->
    0.436, 3072->768 0.560 -> 0.408 (1.35-1.37x; 16 x 16 gave 1.07-1.18x, 4 x 64 0.97-1.24x). On Zen 4, one
    vpdpbusd per cycle, 8 x 16, 4 x 32 and 8 x 32 were within 5% of each other (session 4)."""
    tile = next(t for t in (8, 4, 2, 1) if m % t == 0)
    return Int8DenseSchedule(tile, 2 if n % (2 * LANES) == 0 else 1, use_vnni(vnni))


def pack_weight(qweight: np.ndarray) -> np.ndarray:
    """int8 ``W[N, K]`` -> ``Wp[N/16, K/4, 16, 4]``."""
    n, k = qweight.shape
    return np.ascontiguousarray(qweight.reshape(n // LANES, LANES, k // 4, 4).transpose(0, 2, 1, 3), dtype=np.int8)


@dataclass(frozen=True)
class PackedInt8Weight:
    packed: np.ndarray
    scale: np.ndarray  # float32 [N]
    sums: np.ndarray  # int32 [N]


def prepare_weight(weight: np.ndarray) -> PackedInt8Weight:
    qweight, scale = quantize.quantize_weight(weight)
    return PackedInt8Weight(pack_weight(qweight), scale, quantize.weight_sums(qweight))


def word_broadcast(word):
    """A 4-byte vector (``uint8x4`` or ``int8x4``) repeated in all 16 int32 lanes, as ``int8x64``: the
    broadcast operand of ``vpdpbusd``."""
    from tvm.script import tirx as T

    return T.reinterpret("int8x64", T.broadcast(T.reinterpret("int32", word), LANES))


def dequantized(acc, x_params, w_scale, sums, token, feature):
    """The float32 output of one int32 accumulation (a TIR expression; ``core.tvm.quantize.dequantize`` in numpy):
    ``(acc - zero[token] * sums[feature]) * (scale[token] * w_scale[feature])``. Every int8 kernel's epilogue."""
    from tvm.script import tirx as T

    return T.Cast("float32", acc - T.Cast("int32", x_params[1, token]) * sums[feature]) \
        * (x_params[0, token] * w_scale[feature])


def stored(acc, x_params, w_scale, sums, token, feature, bias=None, residual=None, *,
           epilogue: Epilogue = NO_EPILOGUE, dequantize: bool = True):
    """What an int8 kernel writes for one int32 accumulation: the raw sum without ``dequantize`` (exact tests),
    else its dequantised value with ``epilogue`` applied (``core.tvm.epilogue``: ``bias[feature]``, GELU,
    ``residual[token, feature]``). A TIR expression; kernels bind ``epilogue`` and ``dequantize`` with
    ``functools.partial``."""
    if not dequantize:
        return acc
    return epilogue.applied(dequantized(acc, x_params, w_scale, sums, token, feature), token, feature, bias, residual)


def vpdpbusd(accumulator, u8_operand, s8_operand):
    """One ``vpdpbusd``: 16 int32 lanes += u8[4] . s8[4] per lane (operands as 64-byte vectors). A TIR expression."""
    from tvm.script import tirx as T

    return T.call_llvm_pure_intrin("int32x16", VPDPBUSD, accumulator, u8_operand, s8_operand)


def check_epilogue(kernel: str, epilogue: Epilogue, dequantize: bool) -> None:
    """The int8 kernels apply an epilogue to dequantised output only."""
    if epilogue and not dequantize:
        raise ValueError(f"The int8 {kernel} kernel applies an epilogue ({epilogue.suffix.strip('_')}) to "
                         "dequantised output only; not with dequantize=False.")


def int8_macros(epilogue: Epilogue = NO_EPILOGUE, dequantize: bool = True):
    """TVMScript macros the int8 kernels share (dense here, BSR in ``int8_bsr_kernel``):

    - ``zero(acc, vectors)``: clear ``vectors`` accumulator vectors of 16 int32;
    - ``store(y, x_params, w_scale, sums, row, col, acc, slot, lanes_are_features)``: one accumulator vector to
      ``y[row, col:col + 16]``. With ``lanes_are_features`` the 16 lanes are features of token ``row`` (row-major
      Y); otherwise they are tokens of feature ``row`` (the transposed Y^T of the ``tokens`` BSR kernels).

    A store dequantises, ``(acc - zero[token] * sums) * scale[token] * w_scale``, and applies ``epilogue`` (the
    dense kernel's: ``bias`` and ``residual`` are its buffers; rows are tokens there), or with ``dequantize=False``
    writes the raw int32 accumulation (exact tests; ``stored``)."""
    from tvm.script import tirx as T

    output = functools.partial(stored, epilogue=epilogue, dequantize=dequantize)

    @T.macro
    def zero(acc, vectors):
        for a in T.unroll(vectors):
            for lane in T.vectorized(LANES):
                acc[a * LANES + lane] = 0

    @T.macro
    def store(y, x_params, w_scale, sums, row, col, acc, slot, lanes_are_features, bias=None, residual=None):
        for lane in T.vectorized(LANES):
            feature = T.meta_var(col + lane if lanes_are_features else row)
            token = T.meta_var(row if lanes_are_features else col + lane)
            y[row, col + lane] = output(acc[slot + lane], x_params, w_scale, sums, token, feature, bias, residual)

    return zero, store


def dense_int8_matmul(m: int, k: int, n: int, schedule: Int8DenseSchedule, *, dequantize: bool = True,
                      epilogue: Epilogue = NO_EPILOGUE):
    """PrimFunc ``(XP, x_params, Wp, w_scale, sums[, bias][, residual]) -> Y[m, n]`` float32, or with
    ``dequantize=False`` ``(XP, Wp) -> ACC[m, n]`` int32 (the raw accumulation, for exact tests). The epilogue
    (``core.tvm.epilogue``: bias, GELU, residual) is applied as each accumulator vector is stored."""
    from tvm.script import tirx as T

    check_epilogue("dense", epilogue, dequantize)

    zero, store = int8_macros(epilogue, dequantize)
    tile, panels, vnni = schedule.tile, schedule.panels, schedule.vnni
    groups, panel_groups = k // 4, n // (LANES * panels)
    tiles = m // tile
    width = panels * LANES
    out_dtype = "float32" if dequantize else "int32"

    @T.prim_func(private=True, s_tir=True)
    def kernel(xp: T.Buffer((groups, m, 4), "uint8"), x_params: T.Buffer((2, m), "float32"),
               wp: T.Buffer((n // LANES, groups, LANES, 4), "int8"), w_scale: T.Buffer((n,), "float32"),
               sums: T.Buffer((n,), "int32"), bias: T.Buffer((n,), "float32"), residual: T.Buffer((m, n), "float32"),
               y: T.Buffer((m, n), out_dtype)):
        T.func_attr({"tirx.noalias": True, "tirx.is_scheduled": True})
        for task in T.parallel(tiles * panel_groups):
            acc = T.decl_buffer((tile * width,), "int32", scope="global")
            zero(acc, tile * panels)
            token0 = T.meta_var(task // panel_groups * tile)
            panel0 = T.meta_var(task % panel_groups * panels)
            for c in range(groups):
                for p in T.unroll(panels):
                    for t in T.unroll(tile):
                        slot = T.meta_var((t * panels + p) * LANES)
                        if vnni:
                            acc[T.ramp(slot, 1, LANES)] = vpdpbusd(
                                acc[T.ramp(slot, 1, LANES)], word_broadcast(xp.vload([c, token0 + t, 0], "uint8x4")),
                                wp.vload([panel0 + p, c, 0, 0], "int8x64"))
                        else:
                            for q in T.unroll(4):
                                for lane in T.vectorized(LANES):
                                    acc[slot + lane] = acc[slot + lane] + T.Cast("int32", xp[c, token0 + t, q]) \
                                        * T.Cast("int32", wp[panel0 + p, c, lane, q])
            for t in T.unroll(tile):
                for p in T.unroll(panels):
                    store(y, x_params, w_scale, sums, token0 + t, (panel0 + p) * LANES, acc, (t * panels + p) * LANES,
                          True, bias, residual)

    return epilogue.trimmed(kernel, *(() if dequantize else RAW_UNUSED)).with_attr("op_pattern", 8)


def build(func, target):
    """A PrimFunc compiled alone, callable with TVM tensors (tests, benchmarks)."""
    import tvm

    return tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target=target)["main"]
