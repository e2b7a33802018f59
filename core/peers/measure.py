"""``measure_peers``: every dense peer engine timed beside the others on the same cores, and checked against PyTorch.

1. The model is referenced for the workers (core/peers/model_ref.py) and PyTorch
   fp32's outputs are computed here, once: on the timing input, and, when the
   model has a tokenizer and ``fidelity`` is on, on the project's sentence pairs.
2. Each engine gets its own worker process (core/peers/worker.py), which builds
   or fetches its artifacts, loads and warms up. Engines whose library is missing
   never start; an engine that fails at any step is dropped with its reason.
3. Each worker runs the same inputs once more; its outputs are scored against
   PyTorch's (core/peers/summary.py).
4. Interleaved timing rounds (core/peers/pool.py), then one summary per engine.

``best_peer`` is the fastest engine by median, whatever its precision: compare
``precision`` and ``cosine_vs_fp32`` before calling it a win.
"""

from __future__ import annotations

import gc
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from core.artifact_cache import ArtifactCache, default_cache
from core.errors import SparseLabError
from core.jobs import NO_PROGRESS, Progress
from core.peers import engines as registry
from core.peers.inputs import one_batch, save_batches, sentence_batches, timing_inputs, unbatch
from core.peers.model_ref import ModelRef, model_ref
from core.peers.pool import DEFAULT_PAUSE_S, Call, WorkerPool, WorkerSpec
from core.peers.summary import quiet_rounds, sentence_fidelity, summarise, token_agreement
from core.timing import thread_count
from core.tvm.relax_import import InputShape


@dataclass(frozen=True)
class PeerResult:
    engine: str
    library: str
    precision: str  # what really ran (OpenVINO reports bf16 where the CPU has it)
    ms: float  # median of every timed call
    std_ms: float
    p10_ms: float
    p90_ms: float
    quiet_ms: float  # median over the quietest quarter of rounds (core.timing's convention)
    min_ms: float
    calls: int
    rounds: int
    cosine_vs_fp32: float | None  # sentence-embedding mean cosine when measured, else token cosine
    cosine_basis: str | None
    token_cosine: float | None
    max_abs_error: float | None  # over the timing input's real tokens
    fidelity: dict | None  # core.fidelity scores on the sentence pairs, when the model has a tokenizer
    size_bytes: int | None  # the files the engine loads (None: PyTorch, which loads the model itself)
    cache_hit: bool | None
    prepare_s: float
    load_s: float
    timing: dict | None = None  # core.timing.Timing.as_dict() of every timed call

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PeerReport:
    model: str
    seq_len: int
    batch: int
    threads: int
    rounds: int
    calls_per_round: int
    results: tuple[PeerResult, ...]
    best_peer: str | None
    skipped: tuple[dict, ...]  # {"engine", "reason"}
    order: tuple[dict, ...]  # every engine's turn as the workers reported it: round, engine, started, ended
    quiet_rounds: tuple[int, ...]
    fidelity_basis: str | None
    seconds: float
    notes: tuple[str, ...] = field(default_factory=tuple)
    # SparseLab's own builds timed in the same rounds (TVM dense and sparse): {engine, precision, ms, std_ms,
    # p10_ms, p90_ms, quiet_ms, min_ms, calls, timing}; not peers, so never the best peer
    extra: tuple[dict, ...] = field(default_factory=tuple)

    def result(self, engine: str) -> PeerResult:
        return next(r for r in self.results if r.engine == engine)

    def as_dict(self) -> dict:
        data = asdict(self)
        data.update(results=[r.as_dict() for r in self.results], skipped=list(self.skipped),
                    order=list(self.order), quiet_rounds=list(self.quiet_rounds), notes=list(self.notes),
                    extra=list(self.extra))
        return data


def select_engines(names) -> list[type[registry.Engine]]:
    """The engines to run, in the order given (the registry's order by default)."""
    names = list(registry.ENGINES) if names is None else list(dict.fromkeys(names))
    if not names:
        raise SparseLabError(f"Choose at least one peer engine from {', '.join(registry.ENGINES)}.")
    return [registry.get(name) for name in names]


@dataclass
class _Reference:
    timing_output: np.ndarray
    sentences: dict | None = None  # "batches" (inputs), "outputs" (stacked), "count"


def _reference(model, ref: ModelRef, inputs: dict, shape: InputShape, threads: int, fidelity: bool) -> _Reference:
    """PyTorch fp32 outputs, computed in this process before any worker starts (and then freed)."""
    from core.model_source import resolve
    from core.peers.engines.pytorch import PyTorchRunner
    from core.peers.inputs import groups

    torch_model = resolve(ref.location).load_model(ref.task) if isinstance(model, str) else model
    with thread_count(threads):
        runner = PyTorchRunner(torch_model, threads)
        reference = _Reference(runner.run(inputs))
        if fidelity and ref.has_tokenizer and ref.task == "base":
            from core.fidelity import pair_sentences, sentence_pairs

            sentences = pair_sentences(sentence_pairs())
            batches = sentence_batches(ref.load_tokenizer(), sentences, shape)
            outputs = np.stack([runner.run(group) for group in groups(batches)])
            reference.sentences = {"batches": batches, "outputs": outputs, "count": len(sentences)}
    del runner, torch_model
    gc.collect()
    return reference


def _check_outputs(worker, reference: _Reference, inputs: dict, workdir: Path) -> dict:
    """The engine's outputs on the timing input (and the sentences) scored against PyTorch fp32."""
    name = worker.spec.name
    worker.request({"cmd": "outputs", "batches": str(workdir / "timing.npz"), "out": str(workdir / f"{name}.npy")})
    output = np.load(workdir / f"{name}.npy")[0]
    scores = token_agreement(reference.timing_output, output, inputs["attention_mask"])
    checked = {"token_cosine": scores["cosine"], "max_abs_error": scores["max_abs_error"], "fidelity": None,
               "cosine_vs_fp32": scores["cosine"], "cosine_basis": "token outputs on the timing input"}
    if reference.sentences is not None:
        sentences = reference.sentences
        worker.request({"cmd": "outputs", "batches": str(workdir / "sentences.npz"),
                        "out": str(workdir / f"{name}.sentences.npy")})
        count = sentences["count"]
        mask = unbatch(sentences["batches"]["attention_mask"], count)
        scores = sentence_fidelity(unbatch(sentences["outputs"], count),
                                   unbatch(np.load(workdir / f"{name}.sentences.npy"), count), mask)
        checked.update(fidelity=scores, cosine_vs_fp32=scores["mean_cosine"],
                       cosine_basis=f"sentence embeddings ({count} sentences)")
    return checked


def measure_peers(model, *, seq_len: int = 128, batch: int = 1, threads: int = 2, engines=None, rounds: int = 5,
                  calls_per_round: int = 10, warmup: int = 3, fidelity: bool = True,
                  pause_s: float = DEFAULT_PAUSE_S, cache: ArtifactCache | None = None,
                  progress: Progress = NO_PROGRESS, extra: Sequence[WorkerSpec] = ()) -> PeerReport:
    """Time every peer engine on ``model`` (a model name, a folder, or a transformers model) at
    ``batch`` x ``seq_len`` with ``threads`` threads each, in ``rounds`` interleaved rounds of
    ``calls_per_round`` calls; score each against PyTorch fp32. Failures land in ``skipped``.

    ``extra`` workers (SparseLab's own builds, kind ``tvm``) are timed in the same interleaved rounds and
    reported in ``extra``; their correctness is their caller's to check."""
    began = time.perf_counter()
    if threads < 1 or rounds < 1 or calls_per_round < 1:
        raise SparseLabError("Threads, rounds and calls per round must each be at least 1.")
    shape = InputShape(batch, seq_len)
    chosen = select_engines(engines)
    cache = cache or default_cache()
    skipped: list[dict] = []
    runnable = []
    for engine in chosen:
        reason = engine.missing()
        if reason:
            skipped.append({"engine": engine.name, "reason": reason})
        else:
            runnable.append(engine)

    with tempfile.TemporaryDirectory(prefix="sparselab-peers-") as tmp:
        workdir = Path(tmp)
        progress(0.0, "loading the model")
        ref = model_ref(model, workdir)
        inputs = timing_inputs(shape, ref.vocab_size)
        save_batches(workdir / "timing.npz", one_batch(inputs))
        progress(0.02, "PyTorch fp32 reference outputs")
        reference = _reference(model, ref, inputs, shape, threads, fidelity)
        if reference.sentences is not None:
            save_batches(workdir / "sentences.npz", reference.sentences["batches"])

        specs = [WorkerSpec(name=engine.name, kind="engine",
                            payload={"engine_class": registry.class_path(engine)}) for engine in runnable]
        specs += list(extra)
        common = {"model": ref.as_dict(), "shape": {"batch": batch, "seq_len": seq_len}, "warmup": warmup,
                  "inputs": str(workdir / "timing.npz"),
                  "cache": {"root": str(cache.root), "cap_bytes": cache.cap_bytes}}
        with WorkerPool(specs, threads=threads, log_dir=workdir) as pool:
            progress(0.05, f"preparing {len(specs)} engines (export, quantization, warm-up)")
            loaded = pool.load(common, progress=lambda message: progress(0.1, message))
            checks = {}
            peers_alive = [(name, worker) for name, worker in pool.alive().items()
                           if name not in {spec.name for spec in extra}]
            for index, (name, worker) in enumerate(peers_alive):
                progress(0.4 + 0.1 * index / max(1, len(specs)), f"checking {name} against PyTorch fp32")
                try:
                    checks[name] = _check_outputs(worker, reference, inputs, workdir)
                except Exception as exc:  # a worker error, or outputs of the wrong shape
                    pool.fail(name, f"its outputs could not be checked: {exc}")
            calls = pool.rounds(rounds=rounds, calls=calls_per_round, pause_s=pause_s,
                                progress=lambda fraction, message: progress(0.5 + 0.5 * fraction, message))
            failures = dict(pool.failures)
            alive = list(pool.alive())

    skipped += [{"engine": name, "reason": reason} for name, reason in failures.items()]
    calls = [call for call in calls if call.worker in alive]
    quiet = quiet_rounds(calls)
    results = []
    for engine in runnable:
        if engine.name not in alive:
            continue
        summary = summarise([c for c in calls if c.worker == engine.name], quiet=quiet, warmup=warmup,
                            threads=threads)
        info = loaded[engine.name]
        results.append(PeerResult(
            engine=engine.name, library=engine.engine, precision=info["precision"],
            ms=summary.timing.median_ms, std_ms=summary.timing.std_ms, p10_ms=summary.p10_ms,
            p90_ms=summary.p90_ms, quiet_ms=summary.timing.quiet_ms, min_ms=summary.timing.min_ms,
            calls=summary.timing.repeats, rounds=summary.rounds, **checks[engine.name],
            size_bytes=_artifact_bytes(info["artifacts"]), cache_hit=info["cache_hit"],
            prepare_s=info["prepare_s"], load_s=info["load_s"], timing=summary.timing.as_dict()))
    extra_results = []
    for spec in extra:
        if spec.name in alive:
            summary = summarise([c for c in calls if c.worker == spec.name], quiet=quiet, warmup=warmup,
                                threads=threads)
            extra_results.append({"engine": spec.name, "precision": loaded[spec.name]["precision"],
                                  "ms": summary.timing.median_ms, "std_ms": summary.timing.std_ms,
                                  "p10_ms": summary.p10_ms, "p90_ms": summary.p90_ms,
                                  "quiet_ms": summary.timing.quiet_ms, "min_ms": summary.timing.min_ms,
                                  "calls": summary.timing.repeats, "timing": summary.timing.as_dict()})
    progress(1.0, "done")
    return PeerReport(
        model=ref.label, seq_len=seq_len, batch=batch, threads=threads, rounds=rounds,
        calls_per_round=calls_per_round, results=tuple(results),
        best_peer=min(results, key=lambda r: r.ms).engine if results else None, skipped=tuple(skipped),
        order=tuple(_turn(call) for call in calls), quiet_rounds=tuple(quiet),
        fidelity_basis="sentence pairs (core/data/sentence_pairs.json)" if reference.sentences else None,
        seconds=time.perf_counter() - began, notes=_notes(ref, fidelity, reference), extra=tuple(extra_results))


def _artifact_bytes(artifacts: dict) -> int | None:
    """Size of every file beside each artifact (an OpenVINO IR is .xml + .bin), the cache's metadata aside."""
    from core.artifact_cache import META_FILE

    folders = {Path(path).parent for path in artifacts.values()}
    if not folders:
        return None
    return sum(f.stat().st_size for folder in folders for f in folder.iterdir() if f.is_file() and f.name != META_FILE)


def _turn(call: Call) -> dict:
    return {"round": call.round, "engine": call.worker, "started": call.started, "ended": call.ended}


def _notes(ref: ModelRef, fidelity: bool, reference: _Reference) -> tuple[str, ...]:
    if not fidelity or reference.sentences is not None:
        return ()
    if not ref.has_tokenizer:
        return ("No sentence fidelity: the model has no tokenizer of its own (config architectures have random "
                "weights); cosine_vs_fp32 compares token outputs on the timing input.",)
    return (f"No sentence fidelity: the model's first output is a {ref.task} head, not hidden states.",)
