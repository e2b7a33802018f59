"""The whole Export run: train (or reuse) the dense model, prune it, export, measure, record.

Every trained model and every .tflite lives in the artifact cache under a key
chained from its settings and seed (export key <- pruned-model key <- dense-model
key), so repeating a run retrains and reconverts nothing. Every measurement
(one per file and thread count) goes to the run store as kind "tflite".
Settings are validated, and every pruning checked against the model, before
anything is trained.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from core.artifact_cache import ArtifactCache, default_cache
from core.jobs import NO_PROGRESS, Progress
from core.run_store import RunRecord, RunStore, default_store
from core.tflite.benchmark import tflite_accuracy, tflite_latency
from core.tflite.digits import DigitsSplit, load_split
from core.tflite.export import cached_export
from core.tflite.models import build_model
from core.tflite.options import PruneSpec, TfliteSettings
from core.tflite.pruning import check_prunable, prune, weight_sparsity
from core.tflite.training import cached_model, keras_accuracy, model_spec, train_dense
from core.tflite.verdict import SparseVerdict, sparse_verdict

DENSE = "dense"


@dataclass(frozen=True)
class ExportMeasurement:
    """One .tflite file timed with one thread count (one run-store record)."""

    name: str
    pruning: str
    variant: str
    size_bytes: int
    accuracy: float
    latency_ms: float
    latency_std_ms: float
    latency_min_ms: float
    threads: int
    path: str
    run_id: int

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TfliteReport:
    settings: TfliteSettings
    keras_accuracy: dict[str, float]
    weight_sparsity: dict[str, float]
    exports: list[ExportMeasurement]
    verdicts: list[SparseVerdict]
    cache_hits: dict[str, bool]

    def as_dict(self) -> dict:
        return {"model": self.settings.model, "settings": self.settings.as_params(),
                "keras_accuracy": self.keras_accuracy, "weight_sparsity": self.weight_sparsity,
                "exports": [e.as_dict() for e in self.exports],
                "sparse_verdicts": [v.as_dict() for v in self.verdicts], "cache_hits": self.cache_hits}


class _Steps:
    """Maps the run's steps (training epochs count as fractions of a step) onto the 0..1 progress bar."""

    def __init__(self, report: Progress, total: int):
        self._report, self._total, self._done = report, total, 0

    def start(self, message: str) -> Callable[[int, int], None]:
        """Report the step as begun; returns an epoch callback for steps that train."""
        done = self._done
        self._done += 1
        self._report(done / self._total, message)
        return lambda epoch, epochs: self._report((done + epoch / epochs) / self._total,
                                                  f"{message}: epoch {epoch}/{epochs}")


def _export_names(settings: TfliteSettings) -> list[tuple[str, str]]:
    """(pruning, variant) pairs; the dense model gets no 'sparse' file (it would be the float one)."""
    pairs = [(DENSE, v) for v in settings.variants if v != "sparse"]
    return pairs + [(spec.label, v) for spec in settings.prunes for v in settings.variants]


def _verdicts(settings: TfliteSettings, exports: list[ExportMeasurement]) -> list[SparseVerdict]:
    if not {"float", "sparse"} <= set(settings.variants):
        return []
    verdicts = []
    for spec in settings.prunes:
        rows = {(e.variant, e.threads): e for e in exports if e.pruning == spec.label}
        verdicts.append(sparse_verdict(
            spec.label, spec.method, rows["float", settings.threads[0]].size_bytes,
            rows["sparse", settings.threads[0]].size_bytes,
            {t: rows["float", t].latency_min_ms for t in settings.threads},
            {t: rows["sparse", t].latency_min_ms for t in settings.threads}))
    return verdicts


@dataclass(frozen=True)
class _Trained:
    """A Keras model of the run, with what was measured on it before export."""

    model: object  # tf_keras Model
    key: str  # its artifact-cache key, which its exports' keys chain from
    spec: PruneSpec | None  # None for the dense baseline
    accuracy: float
    weight_sparsity: float


def _train(settings: TfliteSettings, data: DigitsSplit, cache: ArtifactCache, steps: _Steps,
           hits: dict[str, bool]) -> dict[str, _Trained]:
    """The dense model and each pruned variant, from the cache or trained now."""
    choice, common = settings.choice, {"seed": settings.seed, "batch_size": settings.batch_size}

    def trained(model, key: str, spec: PruneSpec | None) -> _Trained:
        return _Trained(model, key, spec, keras_accuracy(model, data.x_test, data.y_test), weight_sparsity(model))

    on_epoch = steps.start(f"training {choice.name}, epochs: {settings.epochs}")
    dense_spec = model_spec("keras-dense", {"model": choice.name, "epochs": settings.epochs, **common})
    dense, hits[DENSE] = cached_model(
        cache, dense_spec, lambda: train_dense(choice, data, settings.epochs, settings.batch_size, settings.seed,
                                               on_epoch), f"{choice.name} dense, {settings.epochs} epochs")
    models = {DENSE: trained(dense, dense_spec.key, None)}
    for spec in settings.prunes:
        on_epoch = steps.start(f"pruning {spec.label}, fine-tuning epochs: {settings.fine_tune_epochs}")
        pruned_spec = model_spec("keras-pruned", {"dense": dense_spec.key, "prune": spec.label,
                                                  "epochs": settings.fine_tune_epochs, **common})
        pruned, hits[spec.label] = cached_model(
            cache, pruned_spec, lambda: prune(dense, spec, data, settings.fine_tune_epochs, settings.batch_size,
                                              settings.seed, on_epoch),
            f"{choice.name} {spec.label}, {settings.fine_tune_epochs} fine-tuning epochs")
        models[spec.label] = trained(pruned, pruned_spec.key, spec)
    return models


def _measure(settings: TfliteSettings, data: DigitsSplit, store: RunStore, steps: _Steps, models: dict,
             label: str, variant: str, path: Path) -> list[ExportMeasurement]:
    """Accuracy of one .tflite file, and its latency with each thread count, each recorded in the store."""
    source, name, blob = models[label], f"{label}/{variant}", path.read_bytes()
    accuracy = tflite_accuracy(blob, data.x_test, data.y_test)
    measurements = []
    for threads in settings.threads:
        steps.start(f"timing {name} with {threads} thread(s)")
        timing = tflite_latency(blob, data.x_test[0], threads, settings.repeats, settings.warmup)
        run_id = store.add(RunRecord(
            kind="tflite", model=settings.model, method=name, sparsity=source.spec.sparsity if source.spec else 0.0,
            size_bytes=len(blob), accuracy=accuracy, latency_ms=timing.median_ms, latency_std_ms=timing.std_ms,
            threads=threads, settings={**settings.as_params(), "pruning": label, "variant": variant},
            metrics={"keras_accuracy": source.accuracy, "dense_keras_accuracy": models[DENSE].accuracy,
                     "weight_sparsity": source.weight_sparsity, "timing": timing.as_dict(),
                     "delegate": "XNNPACK (interpreter default)", "artifact": str(path)}))
        measurements.append(ExportMeasurement(
            name=name, pruning=label, variant=variant, size_bytes=len(blob), accuracy=accuracy,
            latency_ms=timing.median_ms, latency_std_ms=timing.std_ms, latency_min_ms=timing.min_ms,
            threads=threads, path=str(path), run_id=run_id))
    return measurements


def run_pipeline(settings: TfliteSettings, progress: Progress = NO_PROGRESS,
                 cache: ArtifactCache | None = None, store: RunStore | None = None) -> TfliteReport:
    """Train, prune, export and measure as ``settings`` say; see the module docstring."""
    cache, store = cache or default_cache(), store or default_store()
    choice = settings.choice
    for spec in settings.prunes:  # an impossible pruning fails now, not after the training
        check_prunable(build_model(choice), spec)
    data = load_split(settings.seed, choice.upscale, choice.channels)
    exports = _export_names(settings)
    steps = _Steps(progress, 1 + len(settings.prunes) + len(exports) * (1 + len(settings.threads)))
    hits: dict[str, bool] = {}
    models = _train(settings, data, cache, steps, hits)
    measurements = []
    for label, variant in exports:
        name = f"{label}/{variant}"
        steps.start(f"converting {name}")
        path, hits[name] = cached_export(cache, models[label].key, models[label].model, variant, data.x_train,
                                         f"{choice.name} {name}")
        measurements += _measure(settings, data, store, steps, models, label, variant, path)
    progress(1.0, "done")
    return TfliteReport(settings=settings, keras_accuracy={label: m.accuracy for label, m in models.items()},
                        weight_sparsity={label: m.weight_sparsity for label, m in models.items()},
                        exports=measurements, verdicts=_verdicts(settings, measurements), cache_hits=hits)
