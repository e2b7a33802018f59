"""Prune a model source and measure what it cost: the engine behind ``prune``, its job and the sweep.

A ``PruneSession`` loads a model once, keeps its dense weights and its dense
answers on the paraphrase set, and can then prune, score and restore as often
as a sweep needs. Every measured pruning goes to the run store as kind "prune".

Encoders are scored on sentence embeddings; decoders (GPT-2, OPT, Llama ...) load
with their LM head (task ``causal-lm``, also when asked for ``base``) and are
scored on next tokens (``core.fidelity``). An encoder without a tokenizer is
pruned all the same; its fidelity is skipped and ``fidelity_skipped`` says why.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from core.errors import SparseLabError
from core.fidelity import (
    DecoderFidelity,
    Fidelity,
    NextTokens,
    Outputs,
    TokenBatches,
    decoder_fidelity,
    decoder_inputs,
    fidelity,
    model_outputs,
    next_token_outputs,
    pair_sentences,
    sentence_pairs,
)
from core.model_source import ModelSource, resolve
from core.pruning.apply import PruneConfig, PruneResult, prune_model
from core.pruning.save import check_target, save_pruned
from core.pruning.selection import linear_layers, selection_report
from core.run_store import RunRecord, RunStore, default_store

DEFAULT_MODEL = "minilm"  # the real pretrained model: fidelity means something on it


class _NoTokenizer:
    """Stands in for a missing tokenizer when saving a pruned model: there is nothing to write."""

    def save_pretrained(self, *args, **kwargs) -> None:
        return None


@dataclass
class PruneSession:
    """A loaded model, its dense Linear weights, and (if scored) its dense outputs on the sentence set:
    sentence embeddings (``Outputs``) for encoders, next tokens (``NextTokens`` on ``inputs``) for decoders.
    ``tokenizer`` is None for a model without one; ``fidelity_skipped`` then says why there is no score."""

    source: ModelSource
    task: str
    model: object
    tokenizer: object
    dense_weights: dict
    dense: Outputs | NextTokens | None
    decoder: bool = False
    inputs: TokenBatches | None = None
    fidelity_skipped: str | None = None

    @classmethod
    def open(cls, model_name: str = DEFAULT_MODEL, task: str = "base", score: bool = True,
             allow_unscored: bool = False) -> PruneSession:
        """Load and (if ``score``) score the dense model. A model that cannot be scored (an encoder without a
        tokenizer) is refused unless ``allow_unscored``; then ``fidelity_skipped`` says why."""
        source = resolve(model_name)
        if task == "base" and source.is_decoder():
            task = "causal-lm"  # next-token fidelity needs the LM head; the blocks pruned are the same
        decoder = task == "causal-lm"  # scored on next tokens; a decoder under another head like an encoder
        model = source.load_model(task)
        tokenizer = source.find_tokenizer()
        dense_weights = {name: m.weight.detach().clone() for name, m in linear_layers(model).items()}
        dense, inputs, skipped = None, None, None
        if score and decoder:
            inputs = decoder_inputs(tokenizer, model.config.vocab_size)
            dense = next_token_outputs(model, inputs)
        elif score and tokenizer is None:
            skipped = (f"{source.no_tokenizer_reason()} Fidelity compares sentence embeddings of text, so it was "
                       "skipped; the pruning itself ran.")
            if not allow_unscored:
                raise SparseLabError(f"Cannot measure fidelity: {skipped}")
        elif score:
            dense = model_outputs(model, tokenizer, pair_sentences(sentence_pairs()))
        return cls(source, task, model, tokenizer, dense_weights, dense, decoder, inputs, skipped)

    def restore(self) -> None:
        """Put the dense weights back, so the next pruning starts from the original model."""
        import torch

        with torch.no_grad():
            for name, module in linear_layers(self.model).items():
                module.weight.copy_(self.dense_weights[name])

    def prune(self, config: PruneConfig) -> tuple[PruneResult, Fidelity | DecoderFidelity | None, float]:
        """Prune the dense model with ``config``; returns (result, fidelity or None, seconds spent pruning)."""
        self.restore()
        start = time.perf_counter()
        result = prune_model(self.model, config, tokenizer=self.tokenizer)
        seconds = time.perf_counter() - start
        return result, self.score(), seconds

    def score(self) -> Fidelity | DecoderFidelity | None:
        """The model as it is now against the dense answers (None when the session does not score)."""
        if self.dense is None:
            return None
        if self.decoder:
            return decoder_fidelity(self.dense, next_token_outputs(self.model, self.inputs), self.inputs)
        return fidelity(self.dense, model_outputs(self.model, self.tokenizer, pair_sentences(sentence_pairs())))

    def record(self, store: RunStore, result: PruneResult, scored: Fidelity | DecoderFidelity | None,
               seconds: float, **settings) -> int:
        """One run-store row; ``accuracy`` is paraphrase retrieval accuracy (encoders) or next-token agreement
        (decoders) when scored."""
        config = result.config
        metrics = {"achieved_sparsity": result.sparsity, "prune_seconds": seconds, "label": config.label,
                   "pruned_layers": sum(l.selected for l in result.layers)}
        accuracy = None
        if isinstance(scored, DecoderFidelity):
            metrics.update(scored.as_dict())
            accuracy = scored.next_token_agreement
        elif scored is not None:
            metrics.update(scored.as_dict(), sentences=len(self.dense.embeddings))
            accuracy = scored.retrieval_accuracy
        if self.fidelity_skipped:
            metrics["fidelity_skipped"] = self.fidelity_skipped
        return store.add(RunRecord(
            kind="prune", model=self.source.name, method=config.method, sparsity=config.target_sparsity,
            block=config.pattern, accuracy=accuracy, metrics=metrics,
            settings={**config.as_dict(), "task": self.task, "source_kind": self.source.kind, **settings}))


def prune_and_measure(model_name: str, config: PruneConfig, task: str = "base", score: bool = True,
                      save: str | None = None, store: RunStore | None = None) -> dict:
    """Prune, score against the dense model, record, and optionally save; refuses bad input before writing.

    The summary says how the layers were chosen (``selected_by``: structure or pattern, and ``selection``:
    why each Linear layer is in or out), and has ``fidelity`` or, when it could not be measured,
    ``fidelity_skipped`` with the reason."""
    target = check_target(save) if save else None
    session = PruneSession.open(model_name, task, score, allow_unscored=True)
    selection = selection_report(session.model, config.patterns, config.exclude)
    result, scored, seconds = session.prune(config)
    summary = {"model": session.source.name, "task": session.task, **result.as_dict(),
               "selected_by": selection.selected_by, "selection": selection.reasons}
    if scored is not None:
        summary["fidelity"] = scored.as_dict()
    if session.fidelity_skipped:
        summary["fidelity_skipped"] = session.fidelity_skipped
    if target is not None:
        summary["saved"] = str(save_pruned(session.model, session.tokenizer or _NoTokenizer(), target,
                                           {**summary, "config": config.as_dict()}))
    summary["run_id"] = session.record(store or default_store(), result, scored, seconds,
                                       saved=summary.get("saved"))
    return summary
