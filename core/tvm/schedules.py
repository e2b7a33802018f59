"""Schedule rules for everything outside the Linear layers (dlight rules, applied per PrimFunc).

Relax's default CPU pipeline leaves legalized ops as naive single-threaded loops
(BERT-base: ~280 ms of ~310 ms outside the Linears). After fusion, the hot path
is: batch matmuls (attention scores and context), softmax and layer norm
(reductions), and fused elementwise/layout ops (bias, GELU, residual, head
split/merge transposes). Rules, first match wins:
- ``BatchMatmul``: register-tiled (8 rows x 2 vectors of 16 columns: 16 zmm accumulators; 4 x 1 before,
  too few to hide FMA latency: BERT-base's attention matmuls 2.7 -> 1.9 ms each per 12 layers, 2 threads,
  Intel Xeon), vectorised over output columns, parallel over batch x row tiles;
- dlight's CPU ``Reduction`` (softmax, layer norm: parallel rows, vectorised);
- ``Injective``: inline into one loop nest, parallel outer loops, vectorised inner;
- ``OuterParallel``: anything else gets at least its leading spatial loop parallel.
Functions still unscheduled are listed by ``unscheduled``.
"""

from __future__ import annotations

VECTOR_LANES = 16  # float32 lanes of AVX-512; AVX2 machines split them in two


def _rule_classes():
    """The rules, built lazily so that importing this module does not import TVM."""
    from tvm import s_tir, tirx
    from tvm.s_tir import dlight
    from tvm.s_tir.dlight.analysis import normalize_prim_func
    from tvm.s_tir.dlight.base import ScheduleRule, try_inline, try_inline_contiguous_spatial

    def static_extent(sch, loop) -> int | None:
        extent = sch.get(loop).extent
        return int(extent) if isinstance(extent, tirx.IntImm) else None

    def vectorize_last(sch, loops) -> None:
        extent = static_extent(sch, loops[-1])
        if extent and extent > VECTOR_LANES and extent % VECTOR_LANES == 0:
            sch.vectorize(sch.split(loops[-1], [None, VECTOR_LANES])[1])
        elif extent and extent <= 2 * VECTOR_LANES:
            sch.vectorize(loops[-1])

    class BatchMatmul(ScheduleRule):
        """One reduction block ``C[.., i, j] += A[.., i, k] * B[.., k, j]`` (plus inlinable ops)."""

        def apply(self, func, target, _tunable):
            if not isinstance(func, tirx.PrimFunc) or target.kind.name != "llvm":
                return None
            sch = s_tir.Schedule(func)
            infos = try_inline_contiguous_spatial(sch, normalize_prim_func(sch))
            if not infos or len(infos) != 1 or infos[0].dom_kind()[-1:] != "R":
                return None
            kinds = infos[0].dom_kind()
            if kinds.count("R") != 1 or kinds.count("S") < 2:
                return None
            block = infos[0].block_rv
            loops = sch.get_loops(block)
            extents = [static_extent(sch, loop) for loop in loops]
            if None in extents:
                return None
            lanes = next((v for v in (VECTOR_LANES, 8, 4) if extents[-2] % v == 0), None)
            if lanes is None:
                return None
            tile = next(t for t in (8, 4, 2, 1) if extents[-3] % t == 0)
            vectors = 2 if extents[-2] % (2 * lanes) == 0 else 1
            *batch, row, col, red = loops
            row_outer, row_inner = sch.split(row, [None, tile])
            col_outer, col_vec, col_inner = sch.split(col, [None, vectors, lanes])
            sch.reorder(*batch, row_outer, col_outer, red, row_inner, col_vec, col_inner)
            accumulator = sch.cache_write(block, 0, "global")  # < 1 KB global: stack, then registers
            sch.reverse_compute_at(accumulator, col_outer)
            sch.vectorize(sch.get_loops(accumulator)[-1])
            sch.parallel(sch.fuse(*batch, row_outer))
            sch.unroll(row_inner)
            sch.unroll(col_vec)
            sch.vectorize(col_inner)
            sch.decompose_reduction(block, red)
            return sch

    def uses(expr, var) -> bool:
        return any(v.same_as(var) for v in tirx.analysis.undefined_vars(expr))

    def transposed_row_length(sch, block) -> int | None:
        """Row length of an input read with the block's second-last axis contiguous (a transpose)."""
        stmt = sch.get(block)
        *_, row, col = (iv.var for iv in stmt.iter_vars)
        for read in stmt.reads:
            if len(read.region) and uses(read.region[-1].min, row) and not uses(read.region[-1].min, col):
                return static_extent_of(read.source.shape[-1])
        return None

    def static_extent_of(expr) -> int | None:
        return int(expr) if isinstance(expr, tirx.IntImm) else None

    class Injective(ScheduleRule):
        """Only spatial blocks: inline them into the last; 16x16 tiles, parallel outer loops.

        For transposes (head split/merge, X^T/Y^T around the BSR kernels) the
        vector axis is chosen so the strided side has the shorter rows: 8-10x faster
        than always vectorising the output.
        """

        def apply(self, func, target, _tunable):
            if not isinstance(func, tirx.PrimFunc) or target.kind.name != "llvm":
                return None
            sch = s_tir.Schedule(func)
            infos = normalize_prim_func(sch)
            if not infos or not all(info.is_injective() for info in infos):
                return None
            for info in try_inline(sch, infos):
                self.schedule_block(sch, info.block_rv)
            return sch

        @staticmethod
        def schedule_block(sch, block):
            loops = sch.get_loops(block)
            extents = [static_extent(sch, loop) for loop in loops]
            if len(loops) >= 2 and all(e and e % VECTOR_LANES == 0 for e in extents[-2:]):
                *outer, row, col = loops
                row_outer, row_inner = sch.split(row, [None, VECTOR_LANES])
                col_outer, col_inner = sch.split(col, [None, VECTOR_LANES])
                # A transpose strides either its reads (gather) or its writes (scatter):
                # stride over the shorter rows (3072x128 <-> 128x3072: 150 us vs 1.1 ms).
                input_row = transposed_row_length(sch, block)
                scatter = input_row is not None and input_row > extents[-1]
                inner = (col_inner, row_inner) if scatter else (row_inner, col_inner)
                sch.reorder(*outer, row_outer, col_outer, *inner)
                sch.vectorize(inner[1])
                sch.parallel(sch.fuse(*outer, row_outer, col_outer))
                return
            if len(loops) > 1:
                sch.parallel(sch.fuse(*loops[:-1]))
            vectorize_last(sch, sch.get_loops(block))

    class OuterParallel(ScheduleRule):
        """Fallback: parallelise each block's leading spatial loops."""

        def apply(self, func, target, _tunable):
            if not isinstance(func, tirx.PrimFunc) or target.kind.name != "llvm":
                return None
            sch = s_tir.Schedule(func)
            infos = normalize_prim_func(sch)
            if not infos:
                return None
            infos = try_inline_contiguous_spatial(sch, infos)
            changed = False
            for info in infos:
                leading = len(info.dom_kind()) - len(info.dom_kind().lstrip("S"))
                if leading:
                    loops = sch.get_loops(info.block_rv)
                    sch.parallel(sch.fuse(*loops[:leading]) if leading > 1 else loops[0])
                    changed = True
            return sch if changed else None

    return BatchMatmul(), dlight.cpu.Reduction(), Injective(), OuterParallel()


def schedule_pass():
    """The module pass applying the rules to every PrimFunc not already scheduled."""
    from tvm.s_tir import dlight

    return dlight.ApplyDefaultSchedule(*_rule_classes())


def unscheduled(mod) -> list[str]:
    """Names of PrimFuncs no rule scheduled (they run as naive single-threaded loops)."""
    from tvm import tirx

    return sorted(gv.name_hint for gv, func in mod.functions_items()
                  if isinstance(func, tirx.PrimFunc) and not func.attrs.get("tirx.is_scheduled", False))

