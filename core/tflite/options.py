"""What a TFLite pruning run is: model, pruning methods, export variants, epochs, seed, threads.

The CLI and the Export page both build a plain params dict; ``TfliteSettings.from_params``
is the one place it is validated, before any TensorFlow import or training, so a
bad choice fails in a second with a message instead of after minutes of work.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.errors import SparseLabError
from core.pruning.m_by_n import parse_mn


@dataclass(frozen=True)
class ModelChoice:
    """A model the Export page offers, and how the 8x8 digits are fed to it."""

    name: str
    description: str
    upscale: int
    channels: int

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (8 * self.upscale, 8 * self.upscale, self.channels)


MODELS = {choice.name: choice for choice in (
    ModelChoice("digits-cnn", "TF-MOT structural-pruning tutorial CNN, scaled to 8x8 digits", 1, 1),
    ModelChoice("digits-mobilenet", "MobileNet-like CNN on digits upsampled to 32x32x3, "
                                    "shaped for PruneForLatencyOnXNNPack", 4, 3),
)}

METHODS = {
    "constant": "ConstantSparsity: the target fraction of each pruned layer is zeroed from the first step",
    "poly": "PolynomialDecay: sparsity ramps from 0 to the target during fine-tuning",
    "mn": "m:n structural pruning: at most m nonzeros in every n input channels (2:4 is what "
          "sparse hardware runs); a layer whose input depth n does not divide gets m/n unstructured",
    "xnnpack": "PruneForLatencyOnXNNPack: only the 1x1 convolutions of a MobileNet-like model, "
               "ramped to the target (the layers XNNPACK's sparse kernels run)",
}

VARIANTS = {
    "float": "float32, pruned zeros stored as zeros",
    "sparse": "float32 with EXPERIMENTAL_SPARSITY: sparse weights stored compressed behind DENSIFY ops",
    "dynamic": "dynamic-range int8 weights, float activations",
    "int8": "full int8 (weights and activations, int8 input/output) from a representative dataset",
}

_SPEC = re.compile(r"^\s*(constant|poly|xnnpack|mn)\s*:\s*(.+?)\s*$")


@dataclass(frozen=True)
class PruneSpec:
    """One pruning choice. ``sparsity`` is the target fraction of zeros in each pruned layer."""

    method: str
    sparsity: float
    mn: tuple[int, int] | None = None

    @classmethod
    def parse(cls, text: str) -> PruneSpec:
        """``'constant:0.5'``, ``'poly:0.75'``, ``'xnnpack:0.75'`` or ``'mn:2:4'`` (m nonzeros of n)."""
        match = _SPEC.match(text or "")
        if not match:
            raise SparseLabError(f"Pruning '{text}' is not one of constant:S, poly:S, xnnpack:S or mn:M:N "
                                 "(e.g. constant:0.5, mn:2:4).")
        method, value = match[1], match[2]
        if method == "mn":
            m, n = parse_mn(value)
            if m == n:
                raise SparseLabError(f"m:n pattern {m}:{n} keeps every weight; choose m < n (e.g. 2:4).")
            return cls(method, 1 - m / n, (m, n))
        try:
            sparsity = float(value)
        except ValueError:
            raise SparseLabError(f"Sparsity '{value}' in '{text}' is not a number (e.g. 0.5).") from None
        if not 0 < sparsity < 1:
            raise SparseLabError(f"Sparsity {value} in '{text}' must be between 0 and 1 (exclusive).")
        return cls(method, sparsity)

    @property
    def label(self) -> str:
        if self.mn:
            return f"mn:{self.mn[0]}:{self.mn[1]}"
        return f"{self.method}:{self.sparsity:g}"


def _names(value) -> list[str]:
    """A comma-separated string or a list, as a list of stripped non-empty names."""
    items = value.split(",") if isinstance(value, str) else list(value)
    return [str(item).strip() for item in items if str(item).strip()]


def _int(value, what: str, minimum: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise SparseLabError(f"{what} must be a whole number, got '{value}'.") from None
    if number < minimum:
        raise SparseLabError(f"{what} must be at least {minimum}, got {number}.")
    return number


@dataclass(frozen=True)
class TfliteSettings:
    """Everything that determines a run's artifacts and measurements."""

    model: str
    prunes: tuple[PruneSpec, ...]
    variants: tuple[str, ...]
    epochs: int = 8
    fine_tune_epochs: int = 4
    seed: int = 0
    threads: tuple[int, ...] = (1, 2)
    repeats: int = 100
    warmup: int = 10
    batch_size: int = 32

    @property
    def choice(self) -> ModelChoice:
        return MODELS[self.model]

    @classmethod
    def from_params(cls, params: dict) -> TfliteSettings:
        """Validate a params dict (as built by the CLI or the Export page) into settings."""
        model = params.get("model", "digits-cnn")
        if model not in MODELS:
            raise SparseLabError(f"Unknown model '{model}'; choose one of {', '.join(MODELS)}.")
        prunes = tuple(PruneSpec.parse(text) for text in dict.fromkeys(_names(params.get("prune", "mn:2:4"))))
        variants = tuple(dict.fromkeys(_names(params.get("export", ",".join(VARIANTS)))))
        unknown = [v for v in variants if v not in VARIANTS]
        if unknown or not variants:
            raise SparseLabError(f"Unknown export variant(s) {', '.join(unknown) or '(none)'}; "
                                 f"choose from {', '.join(VARIANTS)}.")
        if not prunes:
            raise SparseLabError("Choose at least one pruning (e.g. mn:2:4).")
        epochs = _int(params.get("epochs", cls.epochs), "Epochs", 1)
        threads = sorted({_int(t, "Thread count", 1) for t in _names(params.get("threads", "1,2"))})
        if not threads:
            raise SparseLabError("Choose at least one thread count (e.g. 1,2).")
        return cls(model=model, prunes=prunes, variants=variants, epochs=epochs,
                   fine_tune_epochs=_int(params.get("fine_tune_epochs") or max(1, epochs // 2),
                                         "Fine-tune epochs", 1),
                   seed=_int(params.get("seed", 0), "Seed", 0), threads=tuple(threads),
                   repeats=_int(params.get("repeats", cls.repeats), "Timing repeats", 1),
                   warmup=_int(params.get("warmup", cls.warmup), "Warm-up runs", 0),
                   batch_size=_int(params.get("batch_size", cls.batch_size), "Batch size", 1))

    def as_params(self) -> dict:
        """The JSON-safe params that rebuild these settings (job params, run-store settings)."""
        return {"model": self.model, "prune": [p.label for p in self.prunes], "export": list(self.variants),
                "epochs": self.epochs, "fine_tune_epochs": self.fine_tune_epochs, "seed": self.seed,
                "threads": list(self.threads), "repeats": self.repeats, "warmup": self.warmup,
                "batch_size": self.batch_size}
