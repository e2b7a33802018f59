"""``PeerRequest``: the validated parameters of a peer measurement (CLI flags, job params, run-store settings).

Params are JSON-friendly and named like the CLI flags (core/commands/peers.py);
``engines`` may be a comma-separated string or a list. Every bad value raises a
SparseLabError that says what to change.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from core.errors import SparseLabError
from core.peers.engines import ENGINES

MAX_SEQ_LEN = 512  # BERT's position embeddings
INT_LIMITS = {"seq_len": ("Sequence length", 1, MAX_SEQ_LEN), "batch": ("Batch size", 1, 256),
              "threads": ("Threads", 1, 1024), "rounds": ("Rounds", 1, 1000),
              "calls_per_round": ("Calls per round", 1, 10000), "warmup": ("Warm-up calls", 0, 1000)}


def _int(value, field_name: str) -> int:
    label, low, high = INT_LIMITS[field_name]
    try:
        number = int(value)
        if number != float(value):
            raise ValueError
    except (TypeError, ValueError):
        raise SparseLabError(f"{label} must be a whole number, got '{value}'.") from None
    if not low <= number <= high:
        raise SparseLabError(f"{label} must be between {low} and {high}, got {number}.")
    return number


def _engine_names(value) -> tuple[str, ...]:
    if value is None:
        return tuple(ENGINES)
    items = value.split(",") if isinstance(value, str) else list(value)
    names = tuple(dict.fromkeys(str(item).strip() for item in items if str(item).strip()))
    unknown = [name for name in names if name not in ENGINES]
    if unknown:
        raise SparseLabError(f"Unknown peer engine(s) {', '.join(unknown)}; choose from {', '.join(ENGINES)}.")
    if not names:
        raise SparseLabError(f"Choose at least one peer engine from {', '.join(ENGINES)}.")
    return names


def _bool(value, label: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise SparseLabError(f"{label} must be true or false, got '{value}'.")


@dataclass(frozen=True)
class PeerRequest:
    model: str = "bert-base"
    engines: tuple[str, ...] = ()  # empty: every registered engine (filled in by from_params)
    seq_len: int = 128
    batch: int = 1
    threads: int = 2
    rounds: int = 5
    calls_per_round: int = 10
    warmup: int = 3
    fidelity: bool = True

    @classmethod
    def from_params(cls, params: dict) -> PeerRequest:
        """Validate a params dict; missing keys take the defaults above (every engine)."""
        unknown = sorted(set(params) - {f.name for f in fields(cls)})
        if unknown:
            raise SparseLabError(f"Unknown peer parameter(s) {', '.join(unknown)}; "
                                 f"use {', '.join(f.name for f in fields(cls))}.")
        model = str(params.get("model") or cls.model).strip()
        if not model:
            raise SparseLabError("Name a model (bert-base, bert-tiny, minilm or a folder).")
        given = {name: _int(params[name], name) for name in INT_LIMITS if params.get(name) is not None}
        return cls(model=model, engines=_engine_names(params.get("engines")), **given,
                   fidelity=_bool(params.get("fidelity", True), "Fidelity"))

    def as_params(self) -> dict:
        return {"model": self.model, "engines": list(self.engines), "seq_len": self.seq_len, "batch": self.batch,
                "threads": self.threads, "rounds": self.rounds, "calls_per_round": self.calls_per_round,
                "warmup": self.warmup, "fidelity": self.fidelity}
