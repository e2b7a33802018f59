"""What the Compile page, the ``tvm`` command and its job ask for, validated before any work.

The sparse model is one of: a pruned folder (``weights``; it is also the dense
baseline), random block-sparse what-if weights (``whatif`` = sparsity), or a
pruning of ``model`` made on the spot (``prune`` = ``METHOD:SPARSITY``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from core.errors import SparseLabError
from core.pruning.apply import PruneConfig
from core.pruning.block import format_block, parse_block
from core.tvm.bsr_rewrite import DEFAULT_THRESHOLD, PRECISIONS
from core.tvm.relax_import import InputShape

DEFAULT_MODEL = "bert-base"
WHATIF_BLOCK = "16x1"  # what-if weights: the block that suits TVM's BSR kernels best (docs/tvm.md)
PRUNE_BLOCK = "1x1"  # a real pruning: unstructured unless a block is asked for
INT8_WHATIF_BLOCK = "16x4"  # int8: the int8 BSR kernel takes blocks of 4 input columns (one vpdpbusd lane)
INT8_PRUNE_BLOCK = "1x4"


@dataclass(frozen=True)
class TvmRequest:
    model: str = DEFAULT_MODEL
    weights: str | None = None
    whatif: float | None = None
    prune: str | None = None
    block: str | None = None  # None: WHATIF_BLOCK for what-if weights, PRUNE_BLOCK otherwise (int8: INT8_*)
    threshold: float = DEFAULT_THRESHOLD
    seq_len: int = 128
    batch: int = 1
    threads: int = 1
    repeats: int = 20
    warmup: int = 3
    tune: bool = False
    sweep: bool = False
    precision: str = "fp32"  # "int8": dynamic u8 activations x int8 weights (VNNI); blocks of 4 columns for BSR
    # the dense engines timed beside TVM (core/peers), comma-separated or a list; "all" (every registered one)
    # or "none" (PyTorch eager alone, which is always timed)
    peers: str = "all"

    @classmethod
    def from_params(cls, params: dict) -> TvmRequest:
        """JSON-friendly params named like the CLI flags (core/commands/tvm.py); None means the default."""
        given = {f.name: params[f.name] for f in fields(cls) if params.get(f.name) is not None}
        try:
            for name in ("seq_len", "batch", "threads", "repeats", "warmup"):
                if name in given:
                    given[name] = int(given[name])
            for name in ("whatif", "threshold"):
                if name in given:
                    given[name] = float(given[name])
        except (TypeError, ValueError) as exc:
            raise SparseLabError(f"A TVM setting is not a number: {exc}.") from None
        request = cls(**given)
        request.validate()
        return request

    def as_params(self) -> dict:
        return asdict(self)

    def validate(self) -> None:
        if sum(value is not None for value in (self.weights, self.whatif, self.prune)) != 1:
            raise SparseLabError("Give exactly one of --weights DIR, --whatif SPARSITY or --prune METHOD:SPARSITY.")
        InputShape(self.batch, self.seq_len)  # refuses non-positive sizes
        if self.threads < 1 or self.repeats < 1 or self.warmup < 0:
            raise SparseLabError(f"threads ({self.threads}) and repeats ({self.repeats}) must be at least 1, "
                                 f"warm-up runs ({self.warmup}) at least 0.")
        if self.precision not in PRECISIONS:
            raise SparseLabError(f"Precision '{self.precision}' is not one of {', '.join(PRECISIONS)}.")
        if not 0.0 <= self.threshold < 1.0:
            raise SparseLabError(f"The conversion threshold {self.threshold} is outside [0, 1).")
        self.peer_engines  # noqa: B018 (refuses unknown engines)
        self.block_shape  # noqa: B018 (parses the block)
        self.prune_config()  # a bad pruning is refused before the model loads

    @property
    def block_shape(self) -> tuple[int, int]:
        if self.block:
            return parse_block(self.block)
        if self.precision == "int8":
            return parse_block(INT8_WHATIF_BLOCK if self.whatif is not None else INT8_PRUNE_BLOCK)
        return parse_block(WHATIF_BLOCK if self.whatif is not None else PRUNE_BLOCK)

    @property
    def peer_engines(self) -> tuple[str, ...] | None:
        """None for every registered engine; otherwise the named ones (PyTorch eager is added by compare)."""
        from core.peers import engines

        text = ",".join(self.peers) if isinstance(self.peers, (list, tuple)) else str(self.peers)
        names = tuple(n.strip() for n in text.split(",") if n.strip())
        if names in ((), ("all",)):
            return None
        if names == ("none",):
            return ()
        unknown = [n for n in names if n not in engines.ENGINES]
        if unknown:
            raise SparseLabError(f"Unknown peer engine(s) {', '.join(unknown)}; choose from "
                                 f"{', '.join(engines.ENGINES)}, or all / none.")
        return names

    @property
    def shape(self) -> InputShape:
        return InputShape(self.batch, self.seq_len)

    @property
    def dense_source(self) -> str:
        return self.weights or self.model

    def prune_config(self) -> PruneConfig | None:
        """How to make the sparse model from the dense one, or None when ``weights`` is already sparse."""
        block = format_block(self.block_shape)
        if self.whatif is not None:
            return PruneConfig.from_params({"method": "random", "sparsity": self.whatif, "block": block})
        if self.prune is not None:
            method, _, sparsity = self.prune.partition(":")
            try:
                sparsity = float(sparsity)
            except ValueError:
                raise SparseLabError(f"--prune takes METHOD:SPARSITY (e.g. magnitude:0.95), "
                                     f"not '{self.prune}'.") from None
            return PruneConfig.from_params({"method": method, "sparsity": sparsity, "block": block})
        return None
