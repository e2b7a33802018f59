"""The What-if estimate: whole-model TVM latency and size per (sparsity, block), composed from measurements.

estimate = rest of the model (measured per schedule family and precision, ``rest_of_model``)
         + sum over Linear layers of the measured kernel time at that layer's
           shape: BSR at the what-if sparsity for the layers what-if pruning
           prunes (interpolated over the sparsity grid, ``kernel_timings``),
           the packed dense kernel for the others and for layers the block
           does not divide
         + (int8) the activation quantisation kernel, as many times per
           inference as the rest's build ran it.
Each kernel's table is scaled by how much slower that kernel ran inside the
rest's build than alone in its table (``Rest.in_model`` over the table at
``REST_SPARSITY``, with the family's block; 1.2-1.3 on BERT-base, 16x1, where
the estimate came out 16% low without it: ``rest_of_model``). Layers of a shape
the rest's build did not run as that kind of kernel keep their table as timed.
Every part is scaled by ``reference now / reference then`` (``core.whatif.reference``):
the host's speed drifts through the hour, and a cached table was measured at
another moment than the estimate. ``unscaled_ms`` is the same sum without it.
The TVM dense baseline is the ``rows`` family's rest plus every layer's dense
kernel (``rows`` kernels, like the dense one, write Y directly: no transposes),
in the request's precision.
The peers (ONNX Runtime, OpenVINO, PyTorch eager; ``core.whatif.peers``) are
measured once per model and shape, scaled the same way, and every estimate gets
its speedup over the fastest one.
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
from core.whatif.kernel_timings import (
    SPARSITY_GRID,
    KernelTable,
    KernelTime,
    QuantizeTable,
    bsr_curve,
    dense_kernel_ms,
    measure_tables,
    quantize_kernel_ms,
)
from core.whatif.peers import peer_latencies
from core.whatif.reference import drift_factor, reference_now
from core.whatif.request import WhatIfRequest
from core.whatif.rest_of_model import (
    REST_SPARSITY,
    ModelProfile,
    Rest,
    family,
    family_block,
    linear_label,
    model_profile,
    quantize_label,
    rest_of_model,
)
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
    precision: str = "fp32"
    quantize_ms: float = 0.0  # int8: the activation quantisation kernels (also in estimate_ms)
    unscaled_ms: float = 0.0  # the same sum from the tables as measured, without the drift scaling
    speedup_vs_best_peer: float | None = None  # the fastest peer's ms over this estimate

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
    precision: str = "fp32"
    peers: tuple[dict, ...] = ()  # {engine, library, precision, ms (quiet, scaled to now), ...}
    best_peer: str | None = None
    best_peer_ms: float | None = None
    skipped_peers: tuple[dict, ...] = ()
    reference: dict = field(default_factory=dict)  # now_ms and each cached part's reference_ms and factor
    in_model: dict = field(default_factory=dict)  # "family kernel label" -> in-model / table factor applied

    def as_dict(self) -> dict:
        return {**asdict(self), "estimates": [e.as_dict() for e in self.estimates],
                "sizes": [s.as_dict() for s in self.sizes], "notes": list(self.notes), "peers": list(self.peers),
                "skipped_peers": list(self.skipped_peers)}


@dataclass(frozen=True)
class _Part:
    """A measured time and its one-sigma error, in ms."""

    ms: float
    error_ms: float


def _total(parts: list[_Part]) -> _Part:
    return _Part(sum(p.ms for p in parts), math.hypot(*(p.error_ms for p in parts)))


class _Measurements:
    """The cached measurements one request needs, fetched on first use; remembers whether all were hits.

    Parts come back as measured (with the reference kernel's time then); ``factor`` turns a part's
    reference into its drift factor (reference now / then), 1 when scaling is off."""

    def __init__(self, request: WhatIfRequest, cache, progress: Progress, reference_ms: float | None = None):
        self.request, self.cache, self.progress = request, cache, progress
        self.source = resolve(request.model)
        self.load = functools.cache(self.source.load_model)
        self.hits: list[bool] = []
        self.tokens = request.batch * request.seq_len
        self.precision = request.precision
        self._reference_ms = reference_ms
        self.factors: dict[str, float] = {}
        self.in_model: dict[str, float] = {}

    def _hit(self, pair):
        value, hit = pair
        self.hits.append(hit)
        return value

    def reference_ms(self) -> float:
        """The reference kernel now (timed once per estimate, unless given)."""
        if self._reference_ms is None:
            self.progress(0.47, "timing the reference kernel (host speed now)")
            self._reference_ms = reference_now(self.request.threads, self.cache).ms
        return self._reference_ms

    def factor(self, label: str, then_ms: float | None) -> float:
        value = drift_factor(self.reference_ms(), then_ms)
        self.factors[label] = value
        return value

    def profile(self) -> ModelProfile:
        self.progress(0.02, "model profile (PyTorch eager timing)")
        return self._hit(model_profile(self.source, self.request.shape, self.request.threads, self.load, self.cache))

    def int8(self, shape: tuple[int, int]) -> bool:
        """Whether compile_model runs a dense layer of this (out, in) shape as the int8 kernel."""
        from core.tvm.int8_dense_kernel import supported

        return self.precision == "int8" and supported(shape[1], shape[0])

    @functools.cache
    def dense(self, layer: tuple[int, int]) -> KernelTime:
        precision = "int8" if self.int8(layer) else "fp32"
        return self._hit(dense_kernel_ms(self.tokens, layer, self.request.threads, self.cache, precision))

    @functools.cache
    def quantize(self, features: int) -> KernelTime:
        return self._hit(quantize_kernel_ms(self.tokens, features, self.request.threads, self.cache))

    def time_kernels(self, profile: ModelProfile) -> None:
        """Every kernel table the request needs that this CPU lacks, timed together (``measure_tables``)."""
        threads, shapes = self.request.threads, sorted({layer.shape for layer in profile.linears})
        pruned = sorted({layer.shape for layer in profile.linears if layer.pruned})
        tables = [KernelTable(self.tokens, shape, None, threads, "int8" if self.int8(shape) else "fp32")
                  for shape in shapes]
        # the families' own blocks too: the rest's build ran them, and its in-model times are read against them
        blocks = dict.fromkeys([*self.request.blocks,
                                *(family_block(family(b), self.precision) for b in self.request.blocks)])
        tables += [KernelTable(self.tokens, shape, block, threads, self.precision) for block in blocks
                   for shape in pruned if divides(shape, block)]
        if self.precision == "int8":
            tables += [QuantizeTable(self.tokens, k, threads) for k in sorted({k for _, k in shapes if k % 4 == 0})]
        measured = measure_tables(tables, self.cache, stage(self.progress, 0.05, 0.45))
        self.hits.append(measured == 0)

    @functools.cache
    def curve(self, layer: tuple[int, int], block: tuple[int, int]):
        return self._hit(bsr_curve(self.tokens, layer, block, self.request.threads, self.cache, self.precision))

    @functools.cache
    def rest(self, profile: ModelProfile, family_name: str) -> Rest:
        self.progress(0.5, f"rest of the model ({self.precision} {family_name} family): one compile")
        return self._hit(rest_of_model(self.source, profile, self.request.shape, self.request.threads, family_name,
                                       self.load, self.cache, precision=self.precision))

    @functools.cache
    def peers(self) -> dict:
        if self.request.peers:
            self.progress(0.8, f"timing the peers ({', '.join(self.request.peers)}), once per model and shape")
        return self._hit(peer_latencies(self.request.model, self.source, self.request.shape, self.request.threads,
                                        self.request.peers, self.cache, stage(self.progress, 0.8, 0.98)))


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


def _in_model(m: _Measurements, rest: Rest, family_name: str, label: str, table_ms: float,
              table_reference_ms: float | None) -> float:
    """How much slower the ``label`` kernel ran inside ``rest``'s build than its table's ``table_ms`` says
    (both moved to the same host speed by their reference kernels); 1 if the build did not run it."""
    in_ms = dict(rest.in_model).get(label)
    if in_ms is None or table_ms <= 0:
        return 1.0
    factor = in_ms / table_ms * drift_factor(table_reference_ms, rest.reference_ms)
    m.in_model[f"{family_name} {label}"] = factor
    return factor


def _quantize_part(m: _Measurements, rest: Rest, family_name: str, scaled: bool) -> _Part:
    parts = []
    for features, calls in rest.quantize_calls:
        timed, label = m.quantize(features), quantize_label(features)
        ms = timed.ms * (m.factor(label, timed.reference_ms) if scaled else 1.0) \
            * _in_model(m, rest, family_name, label, timed.ms, timed.reference_ms)
        parts.append(_Part(calls * ms, calls * ms * timed.spread))
    return _total(parts)


def _dense_time(m: _Measurements, rest: Rest, family_name: str, scaled: bool):
    def kernel_ms(shape):
        timed, label = m.dense(shape), linear_label("dense", shape)
        return timed.ms * (m.factor(label, timed.reference_ms) if scaled else 1.0) \
            * _in_model(m, rest, family_name, label, timed.ms, timed.reference_ms), timed.spread

    return kernel_ms


def _rest_part(m: _Measurements, rest: Rest, family_name: str, scaled: bool) -> _Part:
    factor = m.factor(f"rest {family_name}", rest.reference_ms) if scaled else 1.0
    return _Part(rest.ms * factor, rest.error_ms * factor)


def _dense_baseline(m: _Measurements, profile: ModelProfile, scaled: bool = True) -> _Part:
    rows = m.rest(profile, "rows")
    layers = [layer for layer in profile.linears if layer.name in rows.layers]
    return _total(_linear_parts(layers, _dense_time(m, rows, "rows", scaled))
                  + [_quantize_part(m, rows, "rows", scaled), _rest_part(m, rows, "rows", scaled)])


def _sum(m: _Measurements, profile: ModelProfile, sparsity: float, block: tuple[int, int], scaled: bool):
    """(linear, quantisation, rest, sparse layers, kept layers, pruned layers) at one point."""
    family_name = family(block)
    rest = m.rest(profile, family_name)
    linears = [layer for layer in profile.linears if layer.name in rest.layers]
    pruned = [layer for layer in linears if layer.pruned]
    sparse = [layer for layer in pruned if divides(layer.shape, block)]
    kept = [layer for layer in linears if layer not in sparse]

    def bsr_ms(shape):
        curve = m.curve(shape, block)
        ms, error = curve.at(sparsity)
        label = f"bsr {format_block(block)} {shape[0]}x{shape[1]}"
        calibration = m.curve(shape, family_block(family_name, m.precision))  # the block the rest's build ran
        in_model = _in_model(m, rest, family_name, linear_label("bsr", shape), calibration.at(REST_SPARSITY)[0],
                             calibration.reference_ms)
        return ms * (m.factor(label, curve.reference_ms) if scaled else 1.0) * in_model, error

    linear = _total(_linear_parts(sparse, bsr_ms) + _linear_parts(kept, _dense_time(m, rest, family_name, scaled)))
    return (linear, _quantize_part(m, rest, family_name, scaled), _rest_part(m, rest, family_name, scaled), sparse,
            kept, pruned)


def _point(m: _Measurements, profile: ModelProfile, sparsity: float, block: tuple[int, int],
           dense: _Part, calibration: float, best_peer_ms: float | None) -> Estimate:
    linear, quantize, rest, sparse, kept, pruned = _sum(m, profile, sparsity, block, scaled=True)
    unscaled = sum(part.ms for part in _sum(m, profile, sparsity, block, scaled=False)[:3])
    total = _total([linear, quantize, rest])
    error = math.hypot(total.error_ms, total.ms * calibration)
    notes = []
    if len(sparse) < len(pruned):
        shapes = sorted({f"{l.shape[0]}x{l.shape[1]}" for l in pruned if l not in sparse})
        notes.append(f"block {format_block(block)} does not divide {len(pruned) - len(sparse)} pruned layers "
                     f"({', '.join(shapes)}): estimated dense")
    if not SPARSITY_GRID[0] <= sparsity <= SPARSITY_GRID[-1]:
        notes.append(f"outside the measured sparsities {SPARSITY_GRID[0]}-{SPARSITY_GRID[-1]}: extrapolated")
    if m.precision == "int8":
        fp32 = [l for l in kept if not m.int8(l.shape)]
        if fp32:
            notes.append(f"{len(fp32)} layers stay fp32 (int8 kernels need in % 4 == 0 and out % 16 == 0)")
    return Estimate(sparsity, format_block(block), total.ms, error, dense.ms / total.ms,
                    profile.torch_dense_ms / total.ms, linear.ms, rest.ms, len(sparse), len(kept), "; ".join(notes),
                    precision=m.precision, quantize_ms=quantize.ms, unscaled_ms=unscaled,
                    speedup_vs_best_peer=best_peer_ms / total.ms if best_peer_ms else None)


def _peer_rows(m: _Measurements) -> tuple[list[dict], list[dict]]:
    """The peers with ``ms`` scaled to the host's speed now (``measured_ms``: as cached)."""
    data = m.peers()
    factor = m.factor("peers", data.get("reference_ms")) if data["peers"] else 1.0
    rows = [{**row, "measured_ms": row["ms"], "ms": row["ms"] * factor} for row in data["peers"]]
    return sorted(rows, key=lambda row: row["ms"]), list(data.get("skipped", []))


def estimate(request: WhatIfRequest, *, cache=None, store=None, progress: Progress = NO_PROGRESS,
             reference_ms: float | None = None) -> WhatIfResult:
    """Estimates for every (sparsity, block) of ``request``; measures only what this CPU has not cached.
    ``reference_ms``: the reference kernel's time now, when the caller has just measured it."""
    from core.run_store import default_store

    start = time.perf_counter()
    m = _Measurements(request, cache, progress, reference_ms)
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
    families = sorted({family(b) for b in request.blocks} | {"rows"})
    for name in families:  # every compile before the reference is timed and the peers run
        m.rest(profile, name)
    m.reference_ms()
    peers, skipped = _peer_rows(m)
    best = peers[0] if peers else None
    dense = _dense_baseline(m, profile)
    estimates = tuple(_point(m, profile, s, b, dense, rms, best["ms"] if best else None)
                      for b in request.blocks for s in request.sparsities)
    pruned_weights = {b: sum(l.shape[0] * l.shape[1] for l in pruned if divides(l.shape, b)) for b in request.blocks}
    sizes = tuple(model_sizes(profile, s, b, pruned_weights[b], cache) for b in request.blocks
                  for s in request.sparsities)
    progress(1.0, "done")
    return WhatIfResult(
        model=profile.name, seq_len=request.seq_len, batch=request.batch, threads=request.threads,
        estimates=estimates, sizes=sizes, dense_ms=dense.ms, dense_error_ms=math.hypot(dense.error_ms, dense.ms * rms),
        torch_dense_ms=profile.torch_dense_ms, torch_dense_std_ms=profile.torch_dense_std_ms,
        rest_ms={name: _rest_part(m, m.rest(profile, name), name, True).ms for name in families},
        calibration=calibration, seconds=time.perf_counter() - start, cache_hit=all(m.hits),
        notes=tuple(sorted({e.note for e in estimates if e.note})), precision=request.precision,
        peers=tuple(peers), best_peer=best["engine"] if best else None, best_peer_ms=best["ms"] if best else None,
        skipped_peers=tuple(skipped),
        reference={"now_ms": m.reference_ms(), "factors": dict(sorted(m.factors.items()))},
        in_model=dict(sorted(m.in_model.items())))
