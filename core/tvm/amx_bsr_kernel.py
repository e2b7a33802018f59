"""The int8 BSR x dense kernel on Intel AMX tiles, for blocks of 16 (or a multiple of 16) rows x 4 columns.

On a CPU with AMX (Sapphire / Emerald / Granite Rapids), one ``tdpbsud`` multiplies a 16 x 64 s8 tile by a
64 x 16 u8 tile into 16 x 16 int32 accumulators: 16,384 multiply-adds, where AVX-512 VNNI's ``vpdpbusd`` does
64. OpenVINO runs BERT's dense int8 Linears on AMX there, which is why the VNNI sparse kernels
(``int8_bsr_kernel``) only tied it at 90% (README, session 6). This kernel feeds AMX with the same 16x4 blocks:

- **A (weights, s8)**: 16 stored blocks of one 16-row block row side by side are one 16 x 64 tile. They are
  packed at compile time into ``apack[chunk, 16, 64]`` (``apack[c, r, 4b + q] = block b's W[r, q]``); a block
  row's blocks are padded with zero blocks to a multiple of 16 (``chunk_ptr`` says which chunks are whose).
- **B (activations, u8)**: the quantised input is ``XP[K/4, M, 4]`` (``core.tvm.quantize``), so the 4 inputs of
  block b for 16 consecutive tokens are 64 contiguous bytes, ``XP[col_b, t:t+16, :]``: exactly row b of the B
  tile. The 16 rows sit at the blocks' columns, not at one stride, so each chunk's rows are gathered into a
  small buffer first (one 64-byte load and store per row and token tile), then loaded as a tile.
- **C**: 16 output features x 16 tokens, kept in tile registers across the block row's chunks, stored once per
  token tile and dequantised column by column into ``Y[M, N]``. Writing ``YT`` instead and transposing it after
  (as the VNNI ``tokens`` kernels do) cost more than the kernel itself in BERT-base: 6.2 ms of transposes
  against 6.3 ms of AMX kernels (Intel Xeon, Emerald Rapids, 2 threads). A transpose in registers (4 stages
  of 8 two-source interleaves, 64 vpermt2d per tile) was slower than the column reads: 0.306 vs 0.226 ms for
  768 -> 3072 at 90%, same run.

``tiles`` token tiles of 16 share each weight tile (C0..C{tiles-1}, A, B0..B{tiles-1}: at most 7 of the 8 tile
registers). Parallel over token passes when there are at least two (``split_by_tokens``: each thread computes every
feature of its tokens, so its output stays in its core's cache for the token-parallel ops that follow), else over
16-row block rows; each task loads the tile configuration (per-thread state) and releases it at the end. Results
are bit-identical to the VNNI kernels (same int32 sums, same epilogue), which may add the bias, apply GELU and add
a residual as they store (``core.tvm.epilogue``).

Linux hands a process the AMX tile state only when asked (``arch_prctl(ARCH_REQ_XCOMP_PERM,
XFEATURE_XTILEDATA)``); without it the first tile instruction is SIGILL. ``enable_amx`` asks, once per process,
and every runner that loads a library calls it.
"""

from __future__ import annotations

import ctypes
import functools
import os
from dataclasses import dataclass

import numpy as np

from core.tvm import quantize
from core.tvm.epilogue import NONE as NO_EPILOGUE
from core.tvm.epilogue import Epilogue
from core.tvm.int8_bsr_kernel import Int8Bsr
from core.tvm.int8_dense_kernel import LANES, RAW_UNUSED, PackedInt8Weight, check_epilogue, stored

AMX_ENV = "SPARSELAB_INT8_AMX"  # "0" keeps the VNNI kernels on an AMX CPU (comparisons, tests)
TILE_ROWS = 16  # output features per tile (block rows are cut into 16-row slices)
CHUNK = 16  # stored blocks per weight tile: 16 blocks x 4 columns = 64 bytes, one tile row
MAX_TOKEN_TILES = 3  # C and B tiles per token tile, plus one A: 2 * 3 + 1 = 7 of 8 tile registers
TOKEN_SPLIT_PASSES = 2  # token passes from which the parallel tasks are passes, not weight slices

_SYS_ARCH_PRCTL = 158  # x86-64
_ARCH_REQ_XCOMP_PERM = 0x1023
_XFEATURE_XTILEDATA = 18


def cpu_has_amx() -> bool:
    """The host CPU reports ``amx_int8`` (/proc/cpuinfo flags, ``core.environment``)."""
    from core.environment import cpu_info

    return cpu_info().has("amx_int8")


def use_amx(amx: bool | None = None) -> bool:
    """Whether to emit AMX kernels: never when ``amx`` is False or ``SPARSELAB_INT8_AMX`` is 0/false/no/off;
    otherwise when the CPU has AMX and Linux grants this process the tile state. Asking for AMX on a CPU
    without it gives the VNNI kernels, not a SIGILL."""
    forced = os.environ.get(AMX_ENV, "").strip().lower()
    if amx is False or (amx is None and forced in ("0", "false", "no", "off")):
        return False
    return cpu_has_amx() and enable_amx()


@functools.cache
def enable_amx() -> bool:
    """Ask Linux for the AMX tile state for this process (idempotent). False off Linux/x86-64 or if refused."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.syscall(_SYS_ARCH_PRCTL, _ARCH_REQ_XCOMP_PERM, _XFEATURE_XTILEDATA) == 0
    except (OSError, AttributeError):
        return False


def supported_block(block: tuple[int, int]) -> bool:
    rows, cols = block
    return cols == 4 and rows % TILE_ROWS == 0


def token_tiles(m: int) -> int:
    """Token tiles of 16 per pass: as many as fit the tile registers and divide the (padded) token count."""
    return next(t for t in (MAX_TOKEN_TILES, 2, 1) if m % (LANES * t) == 0)


def split_by_tokens(m: int, dense: bool = False) -> bool:
    """Whether the kernel's parallel tasks are token passes (each thread: all features of its tokens) rather than
    16-row weight slices (each thread: its features of every token).

    Sparse: by tokens whenever there are at least ``TOKEN_SPLIT_PASSES`` passes. The quantisation, layer norm and
    GELU around the kernel split by tokens too, so each thread reads what its own core just wrote, and each thread
    reading every stored block costs little at 90% (BERT-base int8, 90% 16x4, 2 threads, Intel Xeon VM with AMX,
    interleaved processes: 13.2-13.7 ms by tokens against 14.8-16.1 ms by slices). Dense: by slices. There the
    weights are 1.5-6x the output's bytes and each thread would read all of them (BERT-base dense int8, same
    host, 3 interleaved rounds: 18.8-19.8 ms by slices against 19.6-20.5 ms by tokens)."""
    return not dense and m // (token_tiles(m) * LANES) >= TOKEN_SPLIT_PASSES


@dataclass(frozen=True)
class AmxSchedule:
    """What the rewrite and What-if's kernel tables key on: the AMX kernel, its token tiles per pass, and whether
    its parallel tasks are token passes or weight slices."""

    tokens_per_pass: int
    dense: bool = False
    by_tokens: bool = False

    @property
    def label(self) -> str:
        split = "/by-tokens" if self.by_tokens else ""
        return f"int8-amx{'-dense' if self.dense else ''}/{self.tokens_per_pass}{split}"


def default_schedule(m: int) -> AmxSchedule:
    return AmxSchedule(token_tiles(m) * LANES, by_tokens=split_by_tokens(m))


def applies(block: tuple[int, int] | None, amx: bool | None = None) -> bool:
    """Whether an int8 BSR layer with ``block`` runs on this kernel: the block fits and AMX is in use."""
    return block is not None and supported_block(block) and use_amx(amx)


def dense_applies(k: int, n: int, amx: bool | None = None) -> bool:
    """Whether a dense int8 Linear ``k -> n`` runs on ``amx_dense_matmul``."""
    return dense_supported(k, n) and use_amx(amx)


def dense_schedule(m: int) -> AmxSchedule:
    return AmxSchedule(token_tiles(m) * LANES, dense=True, by_tokens=split_by_tokens(m, dense=True))


@dataclass(frozen=True)
class AmxBsr:
    """An int8 BSR weight packed for the AMX kernel (see the module docstring)."""

    shape: tuple[int, int]  # (N, K)
    apack: np.ndarray  # int8 [chunks, 16, 64]
    cols: np.ndarray  # int32 [chunks, 16]: the XP group of each slot (0 for padding: its weights are zero)
    chunk_ptr: np.ndarray  # int32 [N / 16 + 1]
    scale: np.ndarray  # float32 [N]
    sums: np.ndarray  # int32 [N]

    @property
    def chunks(self) -> int:
        return int(self.chunk_ptr[-1])


def pack(sparse: Int8Bsr) -> AmxBsr:
    """Repack an ``Int8Bsr`` (``data[nnz, rows, 4]``) into 16 x 64 weight tiles per 16-row slice."""
    rows, cols = sparse.block
    if not supported_block(sparse.block):
        raise ValueError(f"the AMX kernel takes blocks of 16*k rows x 4 columns, not {rows}x{cols}")
    n = sparse.shape[0]
    slices = rows // TILE_ROWS
    counts = np.diff(sparse.indptr.astype(np.int64))
    per_row = -(-counts // CHUNK)  # chunks per block row, for each of its 16-row slices
    chunk_ptr = np.zeros(n // TILE_ROWS + 1, np.int64)
    chunk_ptr[1:] = np.cumsum(np.repeat(per_row, slices))
    total = max(1, int(chunk_ptr[-1]))  # never an empty array: a kernel argument of size 0 is not allowed
    apack = np.zeros((total, TILE_ROWS, CHUNK, 4), np.int8)
    slot_cols = np.zeros((total, CHUNK), np.int32)
    for block_row, count in enumerate(counts):
        start = int(sparse.indptr[block_row])
        for piece in range(slices):
            first = int(chunk_ptr[block_row * slices + piece])
            slot = np.arange(count)
            chunk, within = first + slot // CHUNK, slot % CHUNK
            block_data = sparse.data[start:start + count, piece * TILE_ROWS:(piece + 1) * TILE_ROWS, :]
            apack[chunk, :, within, :] = block_data
            slot_cols[chunk, within] = sparse.indices[start:start + count]
    return AmxBsr(tuple(sparse.shape), apack.reshape(total, TILE_ROWS, CHUNK * 4), slot_cols,
                  chunk_ptr.astype(np.int32), sparse.scale, sparse.sums)


def _intrin(name: str, *args):
    from tvm.script import tirx as T

    return T.evaluate(T.call_llvm_intrin("void", f"llvm.x86.{name}", *args))


def amx_bsr_matmul(m: int, k: int, n: int, *, dequantize: bool = True, epilogue: Epilogue = NO_EPILOGUE,
                   by_tokens: bool | None = None):
    """PrimFunc ``(XP, x_params, apack, cols, chunk_ptr, w_scale, sums[, bias][, residual]) -> Y[m, n]`` float32;
    with ``dequantize=False``: ``(XP, apack, cols, chunk_ptr) -> Y`` int32 accumulations (exact tests). The
    epilogue (``core.tvm.epilogue``: bias, GELU, residual) is applied as the output is stored.
    ``by_tokens``: the parallel split (``split_by_tokens``; None: by the token count)."""
    return _amx_matmul(m, k, n, dequantize, dense=False, epilogue=epilogue, by_tokens=by_tokens)


def amx_dense_matmul(m: int, k: int, n: int, *, dequantize: bool = True, epilogue: Epilogue = NO_EPILOGUE,
                     by_tokens: bool | None = None):
    """The dense int8 Linear on AMX: ``(XP, x_params, apack, w_scale, sums[, bias][, residual]) -> Y[m, n]``
    (``pack_dense``'s apack; ``k`` a multiple of 64). No gather: 16 consecutive 4-input groups of ``XP`` are one B
    tile at stride ``m * 4``. With ``dequantize=False``: ``(XP, apack) -> Y`` int32."""
    if k % (CHUNK * 4):
        raise ValueError(f"the dense AMX kernel needs inputs in multiples of 64, not {k}")
    return _amx_matmul(m, k, n, dequantize, dense=True, epilogue=epilogue, by_tokens=by_tokens)


def dense_supported(k: int, n: int) -> bool:
    return k % (CHUNK * 4) == 0 and n % TILE_ROWS == 0


def pack_dense(qweight: np.ndarray) -> np.ndarray:
    """int8 ``W[N, K]`` -> ``apack[N/16 * K/64, 16, 64]``: tile (slice s, chunk c) holds rows 16s.. and inputs 64c.."""
    n, k = qweight.shape
    tiles = qweight.reshape(n // TILE_ROWS, TILE_ROWS, k // (CHUNK * 4), CHUNK * 4).transpose(0, 2, 1, 3)
    return np.ascontiguousarray(tiles.reshape(-1, TILE_ROWS, CHUNK * 4)).astype(np.int8)


def prepare_dense(weight: np.ndarray) -> PackedInt8Weight:
    """A float weight quantised per row (as ``int8_dense_kernel.prepare_weight``) and packed for the AMX kernel."""
    qweight, scale = quantize.quantize_weight(weight)
    return PackedInt8Weight(pack_dense(qweight), scale, quantize.weight_sums(qweight))


def _amx_matmul(m: int, k: int, n: int, dequantize: bool, dense: bool, epilogue: Epilogue = NO_EPILOGUE,
                by_tokens: bool | None = None):
    from tvm.script import tirx as T

    check_epilogue("AMX", epilogue, dequantize)
    output = functools.partial(stored, epilogue=epilogue, dequantize=dequantize)
    if m % LANES or n % TILE_ROWS or k % 4:
        raise ValueError(f"the AMX kernel needs tokens and outputs in multiples of 16 and inputs of 4, "
                         f"not {m} x {k} -> {n}")
    groups, slices = k // 4, n // TILE_ROWS
    k_chunks = groups // CHUNK  # dense: weight tiles per 16-row slice
    tiles = token_tiles(m)
    span = tiles * LANES  # tokens per pass
    row_bytes = tiles * 64  # a gathered row: the block's 4 inputs for ``span`` tokens
    a_tile = tiles  # tile registers: C0..C{tiles-1}, A, B0..B{tiles-1}
    out_dtype = "float32" if dequantize else "int32"

    def imm(value):  # a tile register number: an unrolled loop index, folded to a constant by lowering
        return T.Cast("int8", value)

    @T.macro
    def multiply_chunk(xp, apack, cols, c, p, gathered):
        if dense:
            _intrin("tileloadd64", imm(a_tile), T.address_of(apack[c, 0, 0]), T.int64(64))
            for v in T.unroll(tiles):
                _intrin("tileloadd64", imm(a_tile + 1 + v),
                        T.address_of(xp[(c % k_chunks) * CHUNK, p * span + v * LANES, 0]), T.int64(m * 4))
                _intrin("tdpbsud", imm(v), imm(a_tile), imm(a_tile + 1 + v))
        else:
            for b in T.unroll(CHUNK):
                group: T.int32 = cols[c, b]
                for v in T.unroll(tiles):
                    gathered.vstore([b, v * 64], xp.vload([group, p * span + v * LANES, 0], "uint8x64"))
            _intrin("tileloadd64", imm(a_tile), T.address_of(apack[c, 0, 0]), T.int64(64))
            for v in T.unroll(tiles):
                _intrin("tileloadd64", imm(a_tile + 1 + v), T.address_of(gathered[0, v * 64]),
                        T.int64(row_bytes))
                _intrin("tdpbsud", imm(v), imm(a_tile), imm(a_tile + 1 + v))

    @T.macro
    def configure(cfg):
        for i in T.vectorized(64):
            cfg[i] = T.uint8(0)
        cfg[0] = T.uint8(1)  # palette 1
        for t in T.unroll(2 * tiles + 1):  # every tile: 16 rows of 64 bytes
            cfg[16 + 2 * t] = T.uint8(64)
            cfg[48 + t] = T.uint8(TILE_ROWS)
        _intrin("ldtilecfg", T.address_of(cfg[0]))

    @T.macro
    def one_pass(s, p, xp, apack, cols, chunk_ptr, out, x_params, w_scale, sums, bias, residual, gathered, acc):
        for v in T.unroll(tiles):
            _intrin("tilezero", imm(v))
        if dense:
            for c in range(s * k_chunks, (s + 1) * k_chunks):
                multiply_chunk(xp, apack, cols, c, p, gathered)
        else:
            for c in range(chunk_ptr[s], chunk_ptr[s + 1]):
                multiply_chunk(xp, apack, cols, c, p, gathered)
        for v in T.unroll(tiles):  # C is features x tokens: read it by columns, write Y[token, :]
            _intrin("tilestored64", imm(v), T.address_of(acc[0]), T.int64(64))
            for t in range(LANES):
                for lane in T.vectorized(LANES):
                    token = T.meta_var(p * span + v * LANES + t)
                    feature = T.meta_var(s * TILE_ROWS + lane)
                    at = T.meta_var(lane * LANES + t)
                    out[token, feature] = output(acc[at], x_params, w_scale, sums, token, feature, bias, residual)

    by_tokens = split_by_tokens(m, dense) if by_tokens is None else by_tokens

    @T.macro
    def body(xp, apack, cols, chunk_ptr, out, x_params, w_scale, sums, bias=None, residual=None):
        if by_tokens:
            for p in T.parallel(m // span):
                cfg = T.decl_buffer((64,), "uint8", scope="global")
                gathered = T.decl_buffer((CHUNK, row_bytes), "uint8", scope="global")
                acc = T.decl_buffer((TILE_ROWS * LANES,), "int32", scope="global")
                configure(cfg)
                for s in range(slices):
                    one_pass(s, p, xp, apack, cols, chunk_ptr, out, x_params, w_scale, sums, bias, residual,
                             gathered, acc)
                _intrin("tilerelease")
        else:
            for s in T.parallel(slices):
                cfg = T.decl_buffer((64,), "uint8", scope="global")
                gathered = T.decl_buffer((CHUNK, row_bytes), "uint8", scope="global")
                acc = T.decl_buffer((TILE_ROWS * LANES,), "int32", scope="global")
                configure(cfg)
                for p in range(m // span):
                    one_pass(s, p, xp, apack, cols, chunk_ptr, out, x_params, w_scale, sums, bias, residual,
                             gathered, acc)
                _intrin("tilerelease")

    if dense:
        @T.prim_func(private=True, s_tir=True)
        def kernel(xp: T.Buffer((groups, m, 4), "uint8"), x_params: T.Buffer((2, m), "float32"),
                   apack: T.Buffer((slices * k_chunks, TILE_ROWS, CHUNK * 4), "int8"),
                   w_scale: T.Buffer((n,), "float32"), sums: T.Buffer((n,), "int32"), bias: T.Buffer((n,), "float32"),
                   residual: T.Buffer((m, n), "float32"), out: T.Buffer((m, n), out_dtype)):
            T.func_attr({"tirx.noalias": True, "tirx.is_scheduled": True})
            body(xp, apack, None, None, out, x_params, w_scale, sums, bias, residual)
    else:
        @T.prim_func(private=True, s_tir=True)
        def kernel(xp: T.Buffer((groups, m, 4), "uint8"), x_params: T.Buffer((2, m), "float32"),
                   apack_handle: T.handle, cols_handle: T.handle, chunk_ptr: T.Buffer((slices + 1,), "int32"),
                   w_scale: T.Buffer((n,), "float32"), sums: T.Buffer((n,), "int32"), bias: T.Buffer((n,), "float32"),
                   residual: T.Buffer((m, n), "float32"), out: T.Buffer((m, n), out_dtype)):
            chunks = T.int32()
            apack = T.match_buffer(apack_handle, (chunks, TILE_ROWS, CHUNK * 4), "int8")
            cols = T.match_buffer(cols_handle, (chunks, CHUNK), "int32")
            T.func_attr({"tirx.noalias": True, "tirx.is_scheduled": True})
            body(xp, apack, cols, chunk_ptr, out, x_params, w_scale, sums, bias, residual)
    return epilogue.trimmed(kernel, *(() if dequantize else RAW_UNUSED)).with_attr("op_pattern", 8)
