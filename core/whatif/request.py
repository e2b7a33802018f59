"""What the What-if page, the ``whatif`` command and its jobs ask for, validated before any work."""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import SparseLabError
from core.pruning.block import format_block, parse_block
from core.tvm.bsr_rewrite import BSR_BLOCKS, INT8_BSR_BLOCKS, PRECISIONS
from core.tvm.relax_import import InputShape

DEFAULT_SPARSITIES = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98)
DEFAULT_BLOCKS = BSR_BLOCKS
DEFAULT_BLOCKS_BY_PRECISION = {"fp32": BSR_BLOCKS, "int8": INT8_BSR_BLOCKS}


def _floats(value) -> tuple[float, ...]:
    items = value.split(",") if isinstance(value, str) else value
    try:
        return tuple(float(item) for item in items)
    except (TypeError, ValueError):
        raise SparseLabError(f"Sparsities must be numbers, e.g. 0.5,0.9 (got '{value}').") from None


def _blocks(value) -> tuple[tuple[int, int], ...]:
    items = value.split(",") if isinstance(value, str) else value
    return tuple(parse_block(item.strip()) if isinstance(item, str) else tuple(item) for item in items)


def _peers(value) -> tuple[str, ...]:
    from core.whatif.peers import engine_names

    return engine_names(value)


@dataclass(frozen=True)
class WhatIfRequest:
    """``blocks=None`` takes the precision's default blocks (fp32: 1x1..32x1; int8: 16x4, 4x4, 1x4);
    ``peers``: the dense engines to set beside the estimates (``None``: every registered one; ``()``: none)."""

    model: str = "bert-base"
    sparsities: tuple[float, ...] = DEFAULT_SPARSITIES
    blocks: tuple[tuple[int, int], ...] | None = None
    seq_len: int = 128
    batch: int = 1
    threads: int = 2
    precision: str = "fp32"
    peers: tuple[str, ...] | None = None

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise SparseLabError(f"Precision must be one of {', '.join(PRECISIONS)} (got '{self.precision}').")
        if self.blocks is None:
            object.__setattr__(self, "blocks", DEFAULT_BLOCKS_BY_PRECISION[self.precision])
        object.__setattr__(self, "peers", _peers(self.peers))
        if not self.sparsities or not self.blocks:
            raise SparseLabError("Give at least one sparsity and one block shape.")
        if self.precision == "int8":
            from core.tvm.int8_bsr_kernel import supported_block

            bad_blocks = [b for b in self.blocks if not supported_block(tuple(b))]
            if bad_blocks:
                raise SparseLabError(f"int8 BSR kernels take blocks of 4 input columns (16x4, 4x4, 1x4), not "
                                     f"{format_block(bad_blocks[0])}.")
        bad = [s for s in self.sparsities if not 0.0 <= s < 1.0]
        if bad:
            raise SparseLabError(f"Sparsity {bad[0]} is outside [0, 1): 0 keeps every weight, 0.9 removes 90%.")
        if self.threads < 1:
            raise SparseLabError(f"Threads must be at least 1 (got {self.threads}).")
        InputShape(self.batch, self.seq_len)  # validates

    @classmethod
    def from_params(cls, params: dict) -> WhatIfRequest:
        """From JSON-friendly params named like the CLI flags; lists may be comma-separated strings."""
        defaults = cls.__dataclass_fields__
        given = {key: params[key] for key in ("model", "seq_len", "batch", "threads", "precision")
                 if params.get(key) is not None}
        blocks = params.get("blocks")
        return cls(**{key: type(defaults[key].default)(value) for key, value in given.items()},
                   sparsities=_floats(params.get("sparsities") or DEFAULT_SPARSITIES),
                   blocks=_blocks(blocks) if blocks else None, peers=params.get("peers"))

    def as_params(self) -> dict:
        return {"model": self.model, "sparsities": list(self.sparsities),
                "blocks": [format_block(block) for block in self.blocks], "seq_len": self.seq_len,
                "batch": self.batch, "threads": self.threads, "precision": self.precision,
                "peers": ",".join(self.peers) or "none"}

    @property
    def shape(self) -> InputShape:
        return InputShape(self.batch, self.seq_len)
