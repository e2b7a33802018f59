"""The BSR x dense kernel in TIR: ``Y[M, N] = X[M, K] @ W[N, K]^T`` with ``W`` in BSR form.

Both read X transposed (``XT[K, M]``): a stored block needs one input feature
for ``tile`` consecutive tokens, one cache line instead of ``tile`` rows of X
(16x1 on 768x3072: 1.10 -> 0.75 ms). Two schedules, because the vector axis
must be the one with enough contiguous lanes:
- ``rows``: for tall blocks (block rows >= 16). A block's column is one vector of
  ``block_rows`` output features; ``tile`` tokens share each loaded block
  (register tile ``tile x block_rows``), X entries are broadcast. Writes ``Y[M, N]``.
- ``tokens``: for thin blocks (1x1 .. 8x1). ``tile`` consecutive tokens are one
  vector; each stored weight is broadcast and multiplied into it. Writes
  ``YT[N, M]``: writing ``Y[M, N]`` scattered every result to its own cache line
  (3x slower at 1x1).
Both parallelise over block rows (output features); the reduction over a block
row's stored blocks has the data-dependent extent ``indptr[i+1] - indptr[i]``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BsrKernelShape:
    """Everything the kernel's code depends on; the stored-block count is symbolic, so
    layers of one shape share one kernel whatever their sparsity."""

    m: int  # tokens (batch * seq_len)
    k: int  # in features
    n: int  # out features
    block: tuple[int, int]

    @property
    def block_rows_count(self) -> int:
        return self.n // self.block[0]


@dataclass(frozen=True)
class BsrSchedule:
    variant: str
    tile: int  # tokens per register tile

    @property
    def label(self) -> str:
        return f"{self.variant}/{self.tile}"


# Accumulators below this many bytes live on the stack (then in registers); TVM
# 0.27 sends larger ones, and any non-"global" scope, to a heap workspace.
_MAX_ACCUMULATOR_BYTES = 1024
_TOKEN_MULTIPLE = 16


def _fits(tile: int, rows: int) -> bool:
    return tile * rows * 4 < _MAX_ACCUMULATOR_BYTES


def default_schedule(shape: BsrKernelShape) -> BsrSchedule:
    """The schedule that measured best for BERT shapes on an AVX-512 CPU (see docs/tvm.md)."""
    rows = shape.block[0]
    if rows >= 16:
        return BsrSchedule("rows", _largest_tile(shape, (8, 4, 2, 1), rows))
    return BsrSchedule("tokens", _largest_tile(shape, (64, 32, 16, 8, 4, 2, 1), rows))


def candidate_schedules(shape: BsrKernelShape) -> list[BsrSchedule]:
    """Schedules worth measuring for ``shape`` (the tuner picks the fastest)."""
    rows = shape.block[0]
    candidates = [BsrSchedule("tokens", t) for t in (16, 32, 64, 128) if shape.m % t == 0 and _fits(t, rows)]
    if rows >= 4:
        candidates += [BsrSchedule("rows", t) for t in (4, 6, 8, 12) if shape.m % t == 0 and _fits(t, rows)]
    return candidates or [default_schedule(shape)]


def _largest_tile(shape: BsrKernelShape, options: tuple[int, ...], rows: int) -> int:
    return next(t for t in options if shape.m % t == 0 and _fits(t, rows))


def padded_tokens(m: int) -> int:
    """Token count the kernel runs on: a multiple of 16 (one AVX-512 vector); the caller pads X.

    A tile must divide the token count, so 40 tokens would otherwise run 8-wide.
    """
    return -(-m // _TOKEN_MULTIPLE) * _TOKEN_MULTIPLE


def output_shape(shape: BsrKernelShape, schedule: BsrSchedule) -> tuple[int, int]:
    """``(M, N)`` for ``rows``, ``(N, M)`` (transposed) for ``tokens``."""
    return (shape.n, shape.m) if schedule.variant == "tokens" else (shape.m, shape.n)


def bsr_matmul(shape: BsrKernelShape, schedule: BsrSchedule):
    """The PrimFunc ``(XT, data, indices, indptr) -> Y`` (``rows``) or ``-> YT`` (``tokens``).

    Hand-written loops rather than te.compute + Schedule: the data-dependent
    reduction extent makes create_prim_func nest blocks that schedule
    primitives cannot reorder across, so the loop nest is spelled out here.
    """
    from tvm.script import tirx as T

    m, k = shape.m, shape.k
    rows, cols = shape.block
    tile, block_rows = schedule.tile, shape.block_rows_count
    # One loop nest for both variants: the accumulator is (outer, inner) with ``inner`` the vector axis,
    # block rows for "rows", tokens for "tokens"; meta_vars name the token and row of each element, so the
    # two PrimFuncs differ only in that layout (their TVMScript is the same as two hand-written nests).
    rows_first = schedule.variant == "rows"
    outer, inner = (tile, rows) if rows_first else (rows, tile)

    @T.prim_func(private=True, s_tir=True)
    def kernel(xt: T.Buffer((k, m), "float32"), data_handle: T.handle, indices_handle: T.handle,
               indptr: T.Buffer((block_rows + 1,), "int32"), out: T.Buffer(output_shape(shape, schedule), "float32")):
        nnz = T.int32()
        data = T.match_buffer(data_handle, (nnz, cols, rows), "float32")
        indices = T.match_buffer(indices_handle, (nnz,), "int32")
        T.func_attr({"tirx.noalias": True, "tirx.is_scheduled": True})
        for i in T.parallel(block_rows):
            for to in range(m // tile):
                acc = T.decl_buffer((outer, inner), "float32", scope="global")
                for a in T.unroll(outer):
                    for b in T.vectorized(inner):
                        acc[a, b] = T.float32(0)
                start: T.int32 = indptr[i]
                for j in range(indptr[i + 1] - start):
                    for c in T.unroll(cols):
                        column: T.int32 = indices[start + j] * cols + c
                        for a in T.unroll(outer):
                            for b in T.vectorized(inner):
                                token = T.meta_var(to * tile + (a if rows_first else b))
                                r = T.meta_var(b if rows_first else a)
                                acc[a, b] = acc[a, b] + data[start + j, c, r] * xt[column, token]
                for a in T.unroll(outer):
                    for b in T.vectorized(inner):
                        token = T.meta_var(to * tile + (a if rows_first else b))
                        feature = T.meta_var(i * rows + (b if rows_first else a))
                        out[(token, feature) if rows_first else (feature, token)] = acc[a, b]
    return kernel


def build_kernel(shape: BsrKernelShape, schedule: BsrSchedule, target):
    """The kernel compiled alone, callable as ``f(xt, data, indices, indptr, out)`` (benchmarks, tuning)."""
    import tvm

    module = tvm.IRModule({"main": bsr_matmul(shape, schedule).with_attr("global_symbol", "main")})
    return tvm.compile(module, target=target)["main"]
