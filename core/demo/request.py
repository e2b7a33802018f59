"""What the Demo page and ``python -m core demo`` ask for."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from core.errors import SparseLabError
from core.pruning.apply import PruneConfig


@dataclass(frozen=True)
class DemoRequest:
    """The pipeline on ``model``: prune (method, sparsity), store (int8, SparseLab layout), compile (TVM BSR with
    ``block``), and the dense engines a user would otherwise run, all at ``seq_len`` tokens on ``threads``."""

    model: str = "minilm"
    method: str = "magnitude"
    sparsity: float = 0.9
    block: str = "1x1"
    seq_len: int = 128
    threads: int = 2

    @classmethod
    def from_params(cls, params: dict) -> DemoRequest:
        given = {f.name: params[f.name] for f in fields(cls) if params.get(f.name) is not None}
        try:
            for name, cast in (("sparsity", float), ("seq_len", int), ("threads", int)):
                if name in given:
                    given[name] = cast(given[name])
        except (TypeError, ValueError) as exc:
            raise SparseLabError(f"A demo setting is not a number: {exc}.") from None
        request = cls(**given)
        request.prune_config()  # refuses a bad method, sparsity or block before anything runs
        if request.threads < 1 or not 1 <= request.seq_len <= 512:
            raise SparseLabError(f"threads must be at least 1 and seq_len in 1..512 (got {request.threads}, "
                                 f"{request.seq_len}).")
        return request

    def as_params(self) -> dict:
        return asdict(self)

    def prune_config(self) -> PruneConfig:
        return PruneConfig.from_params({"method": self.method, "sparsity": self.sparsity, "block": self.block})
