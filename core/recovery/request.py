"""What a recovery asks for, validated before any work (nothing is loaded, trained or written for a bad one).

``method`` chooses how masks are computed: ``magnitude`` (smallest |w|; with ``block`` the blocks with the
lowest norm, with ``mn`` m:n groups), ``block``, ``mn``, or a data-aware one-shot method (``sparsegpt``,
``wanda``) whose masks are set once at the start and then held. Magnitude and block masks follow the cubic
schedule (``schedule.PolynomialSchedule``) up to ``end_fraction`` of the run; m:n and data-aware masks are
one-shot.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from core.errors import SparseLabError
from core.pruning.apply import PruneConfig
from core.pruning.methods import get_method

MAX_MINUTES = 60.0
MIN_SENTENCES = 16  # training text shorter than this (or than one batch) is refused
MIN_SEQ_LEN = 8
ONE_SHOT_CALIBRATION = 64  # calibration sentences for a data-aware method's starting masks (as measured)
RUN_FIELDS = ("minutes", "steps", "resume")  # how long / whether to continue: not part of what is trained
PRECISIONS = ("auto", "bf16", "fp32")
BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # CPUs whose bf16 matmuls are native (oneDNN), so autocast pays


@dataclass(frozen=True)
class RecoveryRequest:
    model: str = "minilm"
    method: str = "magnitude"
    sparsity: float = 0.8
    block: str | None = None  # "16x4": block-shaped zeros
    mn: str | None = None  # "2:4": m:n zeros
    scope: str = "layer"
    minutes: float = 15.0  # training time budget (wall clock)
    steps: int | None = None  # optional cap on steps (tests; a schedule fitted to it instead of the clock)
    # Measured on MiniLM, 15 minutes on 2 cores (benchmarks/recovery.py, README): lr 1e-3 with batch 16 of 32
    # tokens beat 3e-4 (80%: 0.802 vs 0.780 mean cosine) and buys ~2,150 steps; the evaluation sentences are
    # 10-30 tokens, so longer sequences cost steps and buy nothing.
    lr: float = 1e-3
    warmup: float = 0.05  # fraction of the steps with a linearly rising learning rate
    batch: int = 16
    seq_len: int = 32
    cosine_weight: float = 1.0  # 1 - cosine of the mean-pooled, normalised sentence embeddings
    hidden_weight: float = 1.0  # per-layer hidden-state MSE, each layer scaled by the teacher's mean square
    relation_weight: float = 0.0  # MSE of the in-batch cosine-similarity matrices (what retrieval looks at)
    # KL divergence of every layer's self-attention distributions, teacher to student (MiniLM's own distillation
    # signal; real query tokens only). Asks the model for its attention maps: eager attention while training.
    # Measured at 80% (README): weight 1 gained 0.015 mean cosine in 3-minute probes but 0.002-0.005 in 15 minutes
    # (0.867 unstructured, 0.796 16x1), within what the run's extra steps explain; so it is off unless asked.
    attention_weight: float = 0.0
    end_fraction: float = 0.7  # the schedule reaches the target this far through the run; then masks are fixed
    frequency: int = 0  # steps between mask updates (0: about 16 updates over the schedule)
    augment: float = 0.5  # fraction of training sentences altered (words dropped, or two sentences joined)
    calibration: int = ONE_SHOT_CALIBRATION
    # Data-aware starts: "uniform" (every layer at ``sparsity``) or "sensitivity" (per-layer sparsities from each
    # layer's measured drop on calibration text, the same overall: core.pruning.allocation). See README for the
    # measured effect at 80% in 16x1 blocks.
    allocation: str = "uniform"
    seed: int = 0
    resume: bool = True  # continue this request's checkpoint if there is one
    train_embeddings: bool = False  # token/position embeddings are not pruned; frozen unless asked
    texts: tuple[str, ...] | None = None  # training sentences (default: the shipped text ``corpus_name``)
    # Which shipped text trains when ``texts`` is not given: "both" (the project corpus and WordNet's sentences,
    # core/data/CORPUS.md), "corpus" or "wordnet". SparseGPT's starting masks calibrate on the project corpus.
    corpus_name: str = "both"
    # Arithmetic of the forward and backward passes: "bf16" (torch.autocast; master weights, optimizer and loss
    # stay float32), "fp32", or "auto": bf16 where the CPU multiplies bf16 natively (AMX or AVX-512 BF16).
    precision: str = "auto"
    threads: int = 2

    @classmethod
    def from_params(cls, params: dict) -> RecoveryRequest:
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(params) - set(known) - {"save"})
        if unknown:
            raise SparseLabError(f"Unknown recovery option(s) {', '.join(unknown)}; known: {', '.join(known)}.")
        given = {k: v for k, v in params.items() if k in known and v is not None}
        casts = {"sparsity": float, "minutes": float, "lr": float, "warmup": float, "batch": int, "seq_len": int,
                 "cosine_weight": float, "hidden_weight": float, "relation_weight": float,
                 "attention_weight": float, "end_fraction": float,
                 "frequency": int, "augment": float, "calibration": int, "seed": int, "steps": int, "threads": int}
        try:
            given = {k: casts[k](v) if k in casts else v for k, v in given.items()}
        except (TypeError, ValueError) as exc:
            raise SparseLabError(f"A recovery option is not a number: {exc}") from exc
        if "texts" in given:
            given["texts"] = tuple(str(t) for t in given["texts"])
        for flag in ("resume", "train_embeddings"):
            if flag in given:
                given[flag] = bool(given[flag])
        request = cls(**given)
        request.validate()
        return request

    def as_params(self) -> dict:
        params = asdict(self)
        params["texts"] = list(self.texts) if self.texts is not None else None
        return params

    def key_params(self) -> dict:
        """What determines the trained model (the artifact key): everything but how long and whether to resume.
        The time budget counts too: a 15-minute run is a different model from a 5-minute one."""
        params = {k: v for k, v in self.as_params().items() if k not in ("resume", "threads")}
        params["precision"] = "bf16" if self.uses_bf16 else "fp32"  # "auto" trains differently per CPU
        return params

    def validate(self) -> None:
        if not 0.0 <= self.sparsity < 1.0:
            raise SparseLabError(f"Sparsity {self.sparsity} is outside [0, 1): 0 keeps every weight, 0.9 removes 90%.")
        if not 0.0 < self.minutes <= MAX_MINUTES:
            raise SparseLabError(f"Recovery minutes {self.minutes} must be in (0, {MAX_MINUTES:g}].")
        if self.steps is not None and self.steps < 1:
            raise SparseLabError(f"Recovery steps {self.steps} must be a positive number (or left out).")
        if not 0.0 < self.lr <= 0.1:
            raise SparseLabError(f"Learning rate {self.lr} must be in (0, 0.1]: try 1e-4 to 5e-4.")
        if not 0.0 <= self.warmup < 1.0:
            raise SparseLabError(f"Warmup {self.warmup} is a fraction of the run in [0, 1).")
        if self.batch < 1:
            raise SparseLabError(f"Batch size must be positive, not {self.batch}.")
        if self.seq_len < MIN_SEQ_LEN:
            raise SparseLabError(f"Sequence length {self.seq_len} is too short: give at least {MIN_SEQ_LEN} tokens.")
        weights = (self.cosine_weight, self.hidden_weight, self.relation_weight, self.attention_weight)
        if min(weights) < 0 or max(weights) == 0:
            raise SparseLabError("Distillation weights must be non-negative and not all zero (cosine, hidden, "
                                 "relation, attention).")
        if not 0.0 < self.end_fraction <= 1.0:
            raise SparseLabError(f"end_fraction {self.end_fraction} must be in (0, 1].")
        if self.frequency < 0:
            raise SparseLabError(f"Mask update frequency must be >= 0 steps (0: automatic), not {self.frequency}.")
        if not 0.0 <= self.augment <= 1.0:
            raise SparseLabError(f"Augment {self.augment} is a fraction in [0, 1].")
        if not 1 <= self.threads <= 64:
            raise SparseLabError(f"Threads must be in 1..64, not {self.threads}.")
        if self.precision not in PRECISIONS:
            raise SparseLabError(f"Unknown recovery precision '{self.precision}': choose one of "
                                 f"{', '.join(PRECISIONS)}.")
        if self.block and self.mn:
            raise SparseLabError("Give either a block (block zeros) or an m:n pattern, not both.")
        from core.pruning.calibration import SHIPPED_TEXTS

        if self.corpus_name not in SHIPPED_TEXTS:
            raise SparseLabError(f"Unknown training text '{self.corpus_name}': choose one of "
                                 f"{', '.join(SHIPPED_TEXTS)}.")
        self.prune_config()  # method, block, m:n and their sparsity
        self.check_text(self.sentences())

    def prune_config(self) -> PruneConfig:
        """The pruning the masks follow, at the final sparsity (checked: method, sparsity, block, m:n)."""
        method = get_method(self.method)
        params = {"method": self.method, "sparsity": self.sparsity, "scope": self.scope, "seed": self.seed,
                  "block": self.block, "mn": self.mn, "allocation": self.allocation}
        if method.needs_calibration:
            structure = "block" if self.block else "mn" if self.mn else "unstructured"
            params.update(structure=structure, calibration=self.calibration)
            if structure == "mn":
                params["sparsity"] = None
        elif self.method == "magnitude" and self.block:
            params["method"] = "block"
        elif self.method in ("magnitude", "mn") and self.mn:
            params.update(method="mn", sparsity=None)
        return PruneConfig.from_params(params)  # m:n sets its own sparsity: the request's is ignored

    @property
    def one_shot(self) -> bool:
        """Masks set once at the start (data-aware methods, m:n), not grown along the schedule."""
        config = self.prune_config()
        method = get_method(config.method)
        return method.needs_calibration or method.sets_own_sparsity

    @property
    def uses_bf16(self) -> bool:
        """Whether training runs under bf16 autocast: asked for, or ``auto`` on a CPU with native bf16."""
        if self.precision != "auto":
            return self.precision == "bf16"
        from core.environment import cpu_info

        return any(cpu_info().has(flag) for flag in BF16_FLAGS)

    @property
    def target_sparsity(self) -> float:
        return self.prune_config().target_sparsity

    def sentences(self) -> list[str]:
        """The training text: ``texts``, else the shipped text ``corpus_name``."""
        from core.pruning.calibration import shipped_text

        return _usable(shipped_text(self.corpus_name) if self.texts is None else self.texts)

    def calibration_sentences(self) -> list[str]:
        """What a data-aware method's starting masks calibrate on: ``texts``, else the project corpus (the
        task-like text the one-shot results in README were measured with)."""
        from core.pruning.calibration import corpus_sentences

        return _usable(corpus_sentences() if self.texts is None else self.texts)

    def check_text(self, sentences: list[str]) -> None:
        if not sentences:
            raise SparseLabError("The training text is empty: give sentences (one per item), or leave it out to use "
                                 "the project corpus (core/data/corpus.txt).")
        needed = max(MIN_SENTENCES, self.batch)
        if len(sentences) < needed:
            raise SparseLabError(f"The training text is too short: {len(sentences)} usable sentences; recovery needs "
                                 f"at least {needed} (one batch of {self.batch}, and no fewer than {MIN_SENTENCES}).")

    def with_(self, **changes) -> RecoveryRequest:
        return replace(self, **changes)


def _usable(pool) -> list[str]:
    return [s.strip() for s in pool if s and s.strip() and any(ch.isalnum() for ch in s)]
