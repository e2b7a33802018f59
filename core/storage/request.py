"""What the Store page, the ``store`` command and their jobs ask for, validated before any work."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.errors import SparseLabError
from core.storage.store import StoreConfig

DEFAULT_THREADS = 2  # for the int8 vs fp32 latency of the storage report


@dataclass(frozen=True)
class StoreRequest:
    """Store ``model`` (a model source name) as ``config`` says; ``threads`` times the report's latencies."""

    model: str
    config: StoreConfig = field(default_factory=StoreConfig)
    threads: int = DEFAULT_THREADS

    @classmethod
    def from_params(cls, params: dict) -> StoreRequest:
        """``model``, ``format``, ``per_channel``, ``embeddings``, ``task``, ``threads``."""
        if not params.get("model"):
            raise SparseLabError("Name the model to store (minilm, a pruned folder, ...).")
        defaults = StoreConfig()
        config = StoreConfig(format=params.get("format") or defaults.format,
                             per_channel=bool(params.get("per_channel")),
                             embeddings=params.get("embeddings") or defaults.embeddings,
                             task=params.get("task") or defaults.task)
        config.validate()
        threads = int(params.get("threads") or DEFAULT_THREADS)
        if threads < 1:
            raise SparseLabError(f"threads must be at least 1, not {threads}.")
        return cls(params["model"], config, threads)

    def as_params(self) -> dict:
        return {"model": self.model, "format": self.config.format, "per_channel": self.config.per_channel,
                "embeddings": self.config.embeddings, "task": self.config.task, "threads": self.threads}
