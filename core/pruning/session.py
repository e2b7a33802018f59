"""Prune a model source and measure what it cost: the engine behind ``prune``, its job and the sweep.

A ``PruneSession`` loads a model once, keeps its dense weights and its dense
answers on the paraphrase set, and can then prune, score and restore as often
as a sweep needs. Every measured pruning goes to the run store as kind "prune".
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from core.fidelity import Fidelity, Outputs, fidelity, model_outputs, pair_sentences, sentence_pairs
from core.model_source import ModelSource, resolve
from core.pruning.apply import PruneConfig, PruneResult, prune_model
from core.pruning.save import check_target, save_pruned
from core.pruning.selection import linear_layers
from core.run_store import RunRecord, RunStore, default_store

DEFAULT_MODEL = "minilm"  # the real pretrained model: fidelity means something on it


@dataclass
class PruneSession:
    """A loaded model, its dense Linear weights, and (if scored) its dense outputs on the sentence set."""

    source: ModelSource
    task: str
    model: object
    tokenizer: object
    dense_weights: dict
    dense: Outputs | None

    @classmethod
    def open(cls, model_name: str = DEFAULT_MODEL, task: str = "base", score: bool = True) -> PruneSession:
        source = resolve(model_name)
        model = source.load_model(task)
        tokenizer = source.load_tokenizer()
        dense_weights = {name: m.weight.detach().clone() for name, m in linear_layers(model).items()}
        dense = model_outputs(model, tokenizer, pair_sentences(sentence_pairs())) if score else None
        return cls(source, task, model, tokenizer, dense_weights, dense)

    def restore(self) -> None:
        """Put the dense weights back, so the next pruning starts from the original model."""
        import torch

        with torch.no_grad():
            for name, module in linear_layers(self.model).items():
                module.weight.copy_(self.dense_weights[name])

    def prune(self, config: PruneConfig) -> tuple[PruneResult, Fidelity | None, float]:
        """Prune the dense model with ``config``; returns (result, fidelity or None, seconds spent pruning)."""
        self.restore()
        start = time.perf_counter()
        result = prune_model(self.model, config)
        seconds = time.perf_counter() - start
        scored = None
        if self.dense is not None:
            scored = fidelity(self.dense, model_outputs(self.model, self.tokenizer, pair_sentences(sentence_pairs())))
        return result, scored, seconds

    def record(self, store: RunStore, result: PruneResult, scored: Fidelity | None, seconds: float,
               **settings) -> int:
        """One run-store row; ``accuracy`` is paraphrase retrieval accuracy when scored."""
        config = result.config
        metrics = {"achieved_sparsity": result.sparsity, "prune_seconds": seconds, "label": config.label,
                   "pruned_layers": sum(l.selected for l in result.layers)}
        if scored is not None:
            metrics.update(scored.as_dict(), sentences=len(self.dense.embeddings))
        return store.add(RunRecord(
            kind="prune", model=self.source.name, method=config.method, sparsity=config.target_sparsity,
            block=config.pattern, accuracy=scored.retrieval_accuracy if scored else None, metrics=metrics,
            settings={**config.as_dict(), "task": self.task, "source_kind": self.source.kind, **settings}))


def prune_and_measure(model_name: str, config: PruneConfig, task: str = "base", score: bool = True,
                      save: str | None = None, store: RunStore | None = None) -> dict:
    """Prune, score against the dense model, record, and optionally save; refuses bad input before writing."""
    target = check_target(save) if save else None
    session = PruneSession.open(model_name, task, score)
    result, scored, seconds = session.prune(config)
    summary = {"model": session.source.name, "task": task, **result.as_dict()}
    if scored is not None:
        summary["fidelity"] = scored.as_dict()
    if target is not None:
        summary["saved"] = str(save_pruned(session.model, session.tokenizer, target,
                                           {**summary, "config": config.as_dict()}))
    summary["run_id"] = session.record(store or default_store(), result, scored, seconds,
                                       saved=summary.get("saved"))
    return summary
