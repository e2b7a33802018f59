"""The What-if estimate: whole-model TVM latency and size per (sparsity, block), composed from measurements.

estimate = rest of the model (measured per schedule family, ``rest_of_model``)
         + sum over Linear layers of the measured kernel time at that layer's
           shape: BSR at the what-if sparsity for the layers what-if pruning
           prunes (interpolated over the sparsity grid, ``kernel_timings``),
           the packed dense kernel for the others and for layers the block
           does not divide.
The TVM dense baseline is the ``rows`` family's rest plus every layer's dense
kernel (``rows`` kernels, like the dense one, write Y directly: no transposes).
Error bar (one standard deviation, in quadrature): the timing spread of every
measured part, the interpolation error between grid sparsities, and the RMS
relative error of past whole-model checks recorded in the run store.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from core.errors import SparseLabError
from core.jobs import NO_PROGRESS, Progress, stage
from core.model_source import resolve
from core.pruning.block import divides, format_block
from core.whatif.accuracy import past_accuracy
from core.whatif.kernel_timings import SPARSITY_GRID, KernelTable, bsr_curve, dense_kernel_ms, measure_tables
from core.whatif.request import WhatIfRequest
from core.whatif.rest_of_model import ModelProfile, Rest, family, model_profile, rest_of_model
from core.whatif.sizes import SizeEstimate, model_sizes


@dataclass(frozen=True)
class Estimate:
    sparsity: float
    block: str
    estimate_ms: float
    error_ms: float
    speedup: float  # over the TVM dense estimate (same method, so shared errors cancel)
    speedup_vs_torch: float  # over PyTorch eager dense, measured
    linear_ms: float
    rest_ms: float
    sparse_layers: int
    dense_layers: int
    note: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class WhatIfResult:
    model: str
    seq_len: int
    batch: int
    threads: int
    estimates: tuple[Estimate, ...]
    sizes: tuple[SizeEstimate, ...]
    dense_ms: float
    dense_error_ms: float
    torch_dense_ms: float
    torch_dense_std_ms: float
    rest_ms: dict
    calibration: dict
    seconds: float
    cache_hit: bool
    notes: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict:
        return {**asdict(self), "estimates": [e.as_dict() for e in self.estimates],
                "sizes": [s.as_dict() for s in self.sizes], "notes": list(self.notes)}


@dataclass(frozen=True)
class _Part:
    """A measured time and its one-sigma error, in ms."""

    ms: float
    error_ms: float


def _total(parts: list[_Part]) -> _Part:
    return _Part(sum(p.ms for p in parts), math.hypot(*(p.error_ms for p in parts)))


class _Measurements:
    """The cached measurements one request needs, fetched on first use; remembers whether all were hits."""

    def __init__(self, request: WhatIfRequest, cache, progress: Progress):
        self.request, self.cache, self.progress = request, cache, progress
        self.source = resolve(request.model)
        self.load = functools.cache(self.source.load_model)
        self.hits: list[bool] = []
        self.tokens = request.batch * request.seq_len

    def _hit(self, pair):
        value, hit = pair
        self.hits.append(hit)
        return value

    def profile(self) -> ModelProfile:
        self.progress(0.02, "model profile (PyTorch eager timing)")
        return self._hit(model_profile(self.source, self.request.shape, self.request.threads, self.load, self.cache))

    @functools.cache
    def dense(self, layer: tuple[int, int]) -> tuple[float, float]:
        return self._hit(dense_kernel_ms(self.tokens, layer, self.request.threads, self.cache))

    def time_kernels(self, profile: ModelProfile) -> None:
        """Every kernel table the request needs that this CPU lacks, timed together (``measure_tables``)."""
        threads, shapes = self.request.threads, sorted({layer.shape for layer in profile.linears})
        pruned = sorted({layer.shape for layer in profile.linears if layer.pruned})
        tables = [KernelTable(self.tokens, shape, None, threads) for shape in shapes]
        tables += [KernelTable(self.tokens, shape, block, threads) for block in self.request.blocks
                   for shape in pruned if divides(shape, block)]
        measured = measure_tables(tables, self.cache,
                                  stage(self.progress, 0.05, 0.45))
        self.hits.append(measured == 0)

    @functools.cache
    def curve(self, layer: tuple[int, int], block: tuple[int, int]):
        return self._hit(bsr_curve(self.tokens, layer, block, self.request.threads, self.cache))

    @functools.cache
    def rest(self, profile: ModelProfile, family_name: str) -> Rest:
        self.progress(0.5, f"rest of the model ({family_name} family): one compile")
        return self._hit(rest_of_model(self.source, profile, self.request.shape, self.request.threads, family_name,
                                       self.load, self.cache))


def _linear_parts(layers, kernel_ms: Callable[[tuple[int, int]], tuple[float, float]]) -> list[_Part]:
    """One part per distinct shape: its layers share one measurement, so their errors add linearly."""
    counts: dict[tuple[int, int], int] = {}
    for layer in layers:
        counts[layer.shape] = counts.get(layer.shape, 0) + 1
    parts = []
    for shape, count in counts.items():
        ms, spread = kernel_ms(shape)
        parts.append(_Part(count * ms, count * ms * spread))
    return parts


def _point(m: _Measurements, profile: ModelProfile, sparsity: float, block: tuple[int, int],
           dense: _Part, calibration: float) -> Estimate:
    rest = m.rest(profile, family(block))
    linears = [layer for layer in profile.linears if layer.name in rest.layers]
    pruned = [layer for layer in linears if layer.pruned]
    sparse = [layer for layer in pruned if divides(layer.shape, block)]
    kept = [layer for layer in linears if layer not in sparse]
    linear = _total(_linear_parts(sparse, lambda shape: m.curve(shape, block).at(sparsity))
                    + _linear_parts(kept, m.dense))
    total = _total([linear, _Part(rest.ms, rest.error_ms)])
    error = math.hypot(total.error_ms, total.ms * calibration)
    notes = []
    if len(sparse) < len(pruned):
        shapes = sorted({f"{l.shape[0]}x{l.shape[1]}" for l in pruned if l not in sparse})
        notes.append(f"block {format_block(block)} does not divide {len(pruned) - len(sparse)} pruned layers "
                     f"({', '.join(shapes)}): estimated dense")
    if not SPARSITY_GRID[0] <= sparsity <= SPARSITY_GRID[-1]:
        notes.append(f"outside the measured sparsities {SPARSITY_GRID[0]}-{SPARSITY_GRID[-1]}: extrapolated")
    return Estimate(sparsity, format_block(block), total.ms, error, dense.ms / total.ms,
                    profile.torch_dense_ms / total.ms, linear.ms, rest.ms, len(sparse), len(kept), "; ".join(notes))


def estimate(request: WhatIfRequest, *, cache=None, store=None, progress: Progress = NO_PROGRESS) -> WhatIfResult:
    """Estimates for every (sparsity, block) of ``request``; measures only what this CPU has not cached."""
    from core.run_store import default_store

    start = time.perf_counter()
    m = _Measurements(request, cache, progress)
    profile = m.profile()
    pruned = [layer for layer in profile.linears if layer.pruned]
    for block in request.blocks:
        if not any(divides(layer.shape, block) for layer in pruned):
            raise SparseLabError(f"Block {format_block(block)} divides none of the {len(pruned)} prunable Linear "
                                 f"layers of {profile.name} (e.g. {pruned[0].shape[0]}x{pruned[0].shape[1]}).")
    m.time_kernels(profile)
    calibration = {k: v for k, v in past_accuracy(store or default_store(), threads=request.threads).items()
                   if k != "pairs"}
    rms = calibration["rms_rel_error"] or 0.0
    rows = m.rest(profile, "rows")
    dense = _total(_linear_parts([layer for layer in profile.linears if layer.name in rows.layers], m.dense)
                   + [_Part(rows.ms, rows.error_ms)])
    estimates = tuple(_point(m, profile, s, b, dense, rms) for b in request.blocks for s in request.sparsities)
    pruned_weights = {b: sum(l.shape[0] * l.shape[1] for l in pruned if divides(l.shape, b)) for b in request.blocks}
    sizes = tuple(model_sizes(profile, s, b, pruned_weights[b], cache) for b in request.blocks
                  for s in request.sparsities)
    progress(1.0, "done")
    return WhatIfResult(
        model=profile.name, seq_len=request.seq_len, batch=request.batch, threads=request.threads,
        estimates=estimates, sizes=sizes, dense_ms=dense.ms, dense_error_ms=math.hypot(dense.error_ms, dense.ms * rms),
        torch_dense_ms=profile.torch_dense_ms, torch_dense_std_ms=profile.torch_dense_std_ms,
        rest_ms={name: m.rest(profile, name).ms for name in sorted({family(b) for b in request.blocks} | {"rows"})},
        calibration=calibration, seconds=time.perf_counter() - start, cache_hit=all(m.hits),
        notes=tuple(sorted({e.note for e in estimates if e.note})))
