"""What a model costs outside its Linear kernels, measured on a real compile, and its Linear layers.

The rest (attention's batch matmuls, softmax, layer norm, GELU, bias and
residual adds, and the layout transposes) depends on the schedule family: the
``tokens`` BSR kernels (blocks with fewer than 16 rows) read X^T and write Y^T,
which adds transposes that ``rows`` kernels and the dense kernel do not need.
So the model is compiled once per family with every pruned Linear as BSR at
``REST_SPARSITY``, timed whole, and timed again with the VM instrument adding up
the time spent inside the Linear kernels; the difference is the rest. Cached per
model fingerprint, input shape, threads and target: one compile per family per
model and machine.

The same instrumented runs give each Linear kernel's time *inside the model*
(``Rest.in_model``, ms per call by kernel label). A kernel runs slower there
than alone in its table: its output lands in a pooled buffer other kernels
evicted from L2, and its input was just written by another op. The estimate
scales each table by in-model / table at ``REST_SPARSITY`` (``estimate``).
Measured on BERT-base 0.9 16x1 (session 15): FFN-out 0.526 ms in the model
against 0.414 alone, FFN-in 0.42 / 0.344, 768x768 0.111 / 0.090; the whole-model
estimate without this came out 16% low. ``REST_SPARSITY`` is 0.85, in the
middle (in log density) of the sparsities people ask about, and no point
``benchmarks/whatif_accuracy.py`` checks, so those checks stay out of sample.

For ``precision="int8"`` the build is the int8 one (``FAMILY_BLOCKS_INT8``:
1x4 for ``tokens``, 16x4 for ``rows``); the activation quantisation kernels
count as Linear time too (the estimate adds them from their own table), and
the rest records how many times each runs per inference (``quantize_calls``:
Q, K and V share one input, so BERT runs 4 per encoder layer, not 6).
Every pair of runs is followed by one sample of the reference kernel
(``core.whatif.reference``); the rest stores the reference's time over the
same quiet pairs, so an estimate can scale it to the host's speed now.
"""

from __future__ import annotations

import functools
import re
import statistics
import time
from dataclasses import dataclass

from core.jobs import NO_PROGRESS, Progress
from core.model_source import ModelSource, linear_layers
from core.timing import measure, quiet_indices
from core.tvm.compile import BUILD_LIBRARIES, SCHEDULE_VERSION
from core.tvm.relax_import import InputShape, example_inputs
from core.tvm.target import measure_tvm, target_description
from core.whatif.cached import cached_json
from core.whatif.reference import reference_kernel, summarise

REST_SPARSITY = 0.85  # the calibration build's sparsity (module docstring)
FAMILY_BLOCKS = {"tokens": (1, 1), "rows": (16, 1)}  # the rest does not depend on the block within a family
FAMILY_BLOCKS_INT8 = {"tokens": (1, 4), "rows": (16, 4)}
REPEATS = 20
PAUSE_S = 0.05  # between timed runs, so they spread over the shared host's slow and quiet spells
TORCH_REPEATS = 5  # a reference line only; PyTorch eager BERT-base is ~0.2-0.5 s per run on a busy machine
# The names bsr_rewrite gives the kernels it adds: {bsr|dense}[_int8|_amx]_{tokens}_{k}_{n}..., then schedule and
# epilogue suffixes (bsr_rewrite, epilogue); quantize_{m}_{k}_{padded tokens}
LINEAR_SYMBOL = re.compile(r"^(bsr|dense)(?:_int8|_amx)?_(\d+)_(\d+)_(\d+)")
QUANTIZE_SYMBOL = re.compile(r"^quantize_(\d+)_(\d+)_(\d+)")
QUANTIZE_LABEL = "quantize "


@dataclass(frozen=True)
class LinearInfo:
    name: str
    shape: tuple[int, int]  # (out_features, in_features)
    pruned: bool  # selected by what-if pruning (the default selection: the repeated blocks' Linears, found by
    # structure in any transformers family); the others (embeddings' projections, heads) stay dense


@dataclass(frozen=True)
class ModelProfile:
    """The facts an estimate needs about a model, measured once (PyTorch eager timing included)."""

    name: str
    param_count: int
    linears: tuple[LinearInfo, ...]
    torch_dense_ms: float
    torch_dense_std_ms: float

    @property
    def linear_weight_count(self) -> int:
        return sum(layer.shape[0] * layer.shape[1] for layer in self.linears)


def family(block: tuple[int, int]) -> str:
    """The schedule family ``bsr_kernel.default_schedule`` picks for ``block`` (it depends on rows only;
    the int8 kernels split the same way: rows a multiple of 16 -> ``rows``)."""
    return "rows" if block[0] >= 16 else "tokens"


def family_block(family_name: str, precision: str = "fp32") -> tuple[int, int]:
    return (FAMILY_BLOCKS_INT8 if precision == "int8" else FAMILY_BLOCKS)[family_name]


def _model_key(source: ModelSource, shape: InputShape, threads: int) -> dict:
    return {"model": source.fingerprint(), "batch": shape.batch, "seq_len": shape.seq_len,
            "target": target_description(threads)}


def model_profile(source: ModelSource, shape: InputShape, threads: int, load, cache=None) -> tuple[ModelProfile, bool]:
    """``(profile, cache_hit)``; ``load()`` gives the torch model and is called only on a miss."""

    def compute() -> dict:
        import torch

        from core.pruning.selection import select_linear_layers

        model = load()
        pruned = set(select_linear_layers(model))
        inputs = example_inputs(shape, model.config.vocab_size)

        def run():
            with torch.no_grad():
                model(**inputs)

        timing = measure(run, threads=threads, repeats=TORCH_REPEATS, warmup=1)
        return {"param_count": sum(p.numel() for p in model.parameters()),
                "linears": [[name, list(module.weight.shape), name in pruned]
                            for name, module in linear_layers(model).items()],
                "torch_dense_ms": timing.quiet_ms, "torch_dense_std_ms": timing.std_ms}

    data, hit = cached_json("whatif-model", _model_key(source, shape, threads), compute,
                            libraries=("torch", "transformers"), cache=cache,
                            description=f"what-if profile of {source.name}")
    linears = tuple(LinearInfo(name, tuple(layer_shape), pruned) for name, layer_shape, pruned in data["linears"])
    return ModelProfile(source.name, data["param_count"], linears, data["torch_dense_ms"],
                        data["torch_dense_std_ms"]), hit


def whatif_model(model, linears: tuple[LinearInfo, ...], sparsity: float, block: tuple[int, int]):
    """A copy of ``model`` whose pruned Linears that ``block`` divides hold random ``block``-sparse weights
    (the others keep their dense weights, as the estimate assumes)."""
    import copy

    from core.pruning import PruneConfig, prune_model
    from core.pruning.block import divides

    names = [layer.name for layer in linears if layer.pruned and divides(layer.shape, block)]
    sparse = copy.deepcopy(model)
    if names:
        prune_model(sparse, PruneConfig(method="random", sparsity=sparsity, block=block,
                                        patterns=tuple(f"re:^{re.escape(name)}$" for name in names)))
    return sparse


def compile_whatif(model, linears, sparsity: float, block: tuple[int, int], shape: InputShape, threads: int,
                   name: str, cache=None, progress: Progress = NO_PROGRESS, precision: str = "fp32"):
    """The real whole-model TVM build of the what-if model: pruned layers BSR, the rest dense."""
    from core.tvm.bsr_rewrite import RewriteOptions
    from core.tvm.compile import CompileOptions, compile_model

    sparse = whatif_model(model, linears, sparsity, block)
    # any threshold between 0 (unpruned layers) and the what-if sparsity converts exactly the pruned layers
    options = CompileOptions(shape, threads, RewriteOptions(block, threshold=sparsity / 2, precision=precision))
    return compile_model(sparse, options, name=name, cache=cache, progress=progress)


def linear_label(kind: str, shape: tuple[int, int]) -> str:
    """``"bsr 768x3072"`` / ``"dense 768x3072"``: a Linear kernel of ``shape`` (out, in), as estimates name it."""
    return f"{kind} {shape[0]}x{shape[1]}"


def quantize_label(features: int) -> str:
    """``"quantize 768"``: the activation quantisation of a Linear's ``features`` inputs."""
    return f"{QUANTIZE_LABEL}{features}"


@functools.cache  # called twice per kernel call by the instrument of rest_samples; a build has a few symbols
def kernel_label(symbol: str) -> str | None:
    """The label (``linear_label``, ``quantize_label``) of a Linear kernel symbol of a compiled model, None for
    every other function the model calls."""
    match = LINEAR_SYMBOL.match(symbol)
    if match:
        kind, _, k, n = match.groups()
        return linear_label(kind, (int(n), int(k)))
    match = QUANTIZE_SYMBOL.match(symbol)
    return quantize_label(int(match.group(2))) if match else None


@dataclass
class RestSamples:
    """Per pair: ``(whole-run ms, ms inside the Linear kernels)`` and, from the instrumented run, each kernel
    label's ``(ms, calls)``; the reference kernel's sample after each pair (empty without one)."""

    pairs: list[tuple[float, float]]
    references: list[float]
    kernels: list[dict[str, tuple[float, int]]]

    @property
    def quantize_calls(self) -> dict[int, int]:
        """Calls per inference of each quantisation kernel, by its input features (the last instrumented run)."""
        last = self.kernels[-1] if self.kernels else {}
        return {int(label.removeprefix(QUANTIZE_LABEL)): calls for label, (_, calls) in last.items()
                if label.startswith(QUANTIZE_LABEL)}

    def in_model(self, positions) -> dict[str, float]:
        """Each kernel label's median over the pairs at ``positions`` of its ms per call."""
        runs = [self.kernels[i] for i in positions]
        return {label: statistics.median(run[label][0] / run[label][1] for run in runs if label in run)
                for label in sorted({label for run in runs for label in run})}


def rest_samples(runner, args, threads: int, repeats: int = REPEATS, reference=None) -> RestSamples:
    """Pairs of adjacent runs: a plain one timed whole, then one with the VM instrument adding up the Linear
    kernel calls (quantisation included). Adjacent runs see the same load from other processes, so their
    difference is the rest even when that load drifts. ``reference`` (``sample() -> ms``) follows each pair."""
    from tvm.runtime.vm import VMInstrumentReturnKind

    pairs, references, started, runs = [], [], [0.0], []
    kernels: dict[str, list] = {}  # label -> [ms, calls] in this run

    def instrument(func, symbol, before, ret, *call_args):
        label = kernel_label(str(symbol))
        if label is not None:
            if before:
                started[0] = time.perf_counter()
            else:
                entry = kernels.setdefault(label, [0.0, 0])
                entry[0] += (time.perf_counter() - started[0]) * 1e3
                entry[1] += 1
        return VMInstrumentReturnKind.NO_OP

    def pair():
        runner.vm.set_instrument(None)
        start = time.perf_counter()
        runner.run_device(args)
        whole = time.perf_counter() - start
        kernels.clear()
        runner.vm.set_instrument(instrument)
        runner.run_device(args)
        runs.append({label: (ms, calls) for label, (ms, calls) in kernels.items()})
        pairs.append((whole * 1e3, sum(ms for ms, _ in runs[-1].values())))
        if reference is not None:
            references.append(reference.sample())

    measure_tvm(pair, threads=threads, repeats=repeats, pause_s=PAUSE_S)
    return RestSamples(pairs[-repeats:], references[-repeats:], runs[-repeats:])


@dataclass(frozen=True)
class Rest:
    """The measured rest of a model in one schedule family, and the Linear layers its graph runs
    (torch.export keeps only what the first output needs: BERT's pooler is dropped)."""

    ms: float
    error_ms: float
    layers: frozenset[str]
    reference_ms: float | None = None  # the reference kernel over the same quiet pairs
    quantize_calls: tuple[tuple[int, int], ...] = ()  # (in features, calls per inference) of the int8 quantisation
    kernels: frozenset[str] = frozenset()  # layers the build ran as int8 kernels (int8 builds only)
    in_model: tuple[tuple[str, float], ...] = ()  # (kernel label, ms per call inside the model at REST_SPARSITY)


def rest_of_model(source: ModelSource, profile: ModelProfile, shape: InputShape, threads: int, family_name: str,
                  load, cache=None, progress: Progress = NO_PROGRESS, precision: str = "fp32",
                  reference=None) -> tuple[Rest, bool]:
    """``(rest, cache_hit)`` for the ``family_name`` schedule family in ``precision``."""
    block = family_block(family_name, precision)

    def compute() -> dict:
        model = load()
        start = time.perf_counter()
        compiled = compile_whatif(model, profile.linears, REST_SPARSITY, block, shape, threads,
                                  f"{source.name} what-if rest", cache=cache, progress=progress, precision=precision)
        runner = compiled.runner()
        measured = rest_samples(runner, runner.to_device(example_inputs(shape, model.config.vocab_size)), threads,
                                reference=reference or reference_kernel(threads, cache))
        samples = measured.pairs
        quiet_positions = quiet_indices([whole for whole, _ in samples])
        quiet = [samples[i] for i in quiet_positions]
        rest = statistics.median(whole - inside for whole, inside in quiet)
        return {"rest_ms": rest, "spread_ms": statistics.pstdev(whole - inside for whole, inside in samples),
                "total_ms": statistics.median(whole for whole, _ in quiet),
                "linear_ms": statistics.median(inside for _, inside in quiet),
                "in_model": measured.in_model(quiet_positions),
                "reference_ms": summarise(measured.references).ms,
                "quantize_calls": sorted(measured.quantize_calls.items()),
                "int8_layers": [layer.name for layer in compiled.layers if layer.precision == "int8"],
                "layers": [layer.name for layer in compiled.layers], "seconds": time.perf_counter() - start}

    inputs = {**_model_key(source, shape, threads), "family": family_name, "block": list(block),
              "sparsity": REST_SPARSITY, "schedule_version": SCHEDULE_VERSION}
    if precision != "fp32":
        from core.tvm.compile import INT8_VERSION
        from core.tvm.int8_dense_kernel import use_vnni

        inputs.update(precision=precision, int8_vnni=use_vnni(), int8_version=INT8_VERSION)
    data, hit = cached_json("whatif-rest", inputs, compute, libraries=BUILD_LIBRARIES, cache=cache,
                            description=f"what-if rest of {source.name} ({precision} {family_name})")
    return Rest(data["rest_ms"], data["spread_ms"], frozenset(data["layers"]), data.get("reference_ms"),
                tuple((int(k), int(n)) for k, n in data.get("quantize_calls", [])),
                frozenset(data.get("int8_layers", [])), tuple(sorted(data.get("in_model", {}).items()))), hit
