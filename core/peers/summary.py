"""Interleaved calls -> one summary per engine, with core.timing's conventions, and output agreement.

Latency: ``core.timing.Timing.of`` over every timed call of an engine (median,
mean, std, min), plus p10/p90 (``statistics.quantiles``, inclusive). Its quiet
figure is decided by whole rounds, as core.timing's ``quiet_indices`` intends: a
slow spell on a shared host slows every engine timed during it, so a round's
score is the mean over engines of (that round's median / the engine's overall
median), and the quiet runs are the calls of the quietest quarter of rounds.

Agreement with PyTorch fp32: cosine and max abs error over the real tokens of
the timing input (padding positions are computed but mean nothing), and, for
models with a tokenizer, core.fidelity's sentence-embedding fidelity.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from core.peers.pool import Call
from core.timing import Timing, quiet_indices


@dataclass(frozen=True)
class LatencySummary:
    timing: Timing
    p10_ms: float
    p90_ms: float
    rounds: int


def quiet_rounds(calls: list[Call]) -> list[int]:
    """The rounds in the quietest quarter (at least one), judged across every engine."""
    per_engine: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for call in calls:
        per_engine[call.worker][call.round].extend(call.times_ms)
    if not per_engine:
        return []
    scores: dict[int, list[float]] = defaultdict(list)
    for by_round in per_engine.values():
        overall = statistics.median([t for times in by_round.values() for t in times])
        for index, times in by_round.items():
            scores[index].append(statistics.median(times) / overall)
    order = sorted(scores)
    return sorted(order[i] for i in quiet_indices([statistics.fmean(scores[r]) for r in order]))


def summarise(calls: list[Call], *, quiet: list[int], warmup: int, threads: int) -> LatencySummary:
    """One engine's calls (any order of rounds) as a Timing plus p10/p90."""
    samples, quiet_positions = [], []
    for call in sorted(calls, key=lambda c: c.round):
        if call.round in quiet:
            quiet_positions.extend(range(len(samples), len(samples) + len(call.times_ms)))
        samples.extend(call.times_ms)
    timing = Timing.of(samples, warmup=warmup, threads=threads, quiet=quiet_positions or None)
    return LatencySummary(timing=timing, p10_ms=timing.p10_ms, p90_ms=timing.p90_ms,
                          rounds=len({c.round for c in calls}))


def token_agreement(reference: np.ndarray, output: np.ndarray, attention_mask: np.ndarray) -> dict:
    """Mean cosine and max abs error between two outputs over real tokens ([batch, seq, ...] outputs)
    or over rows (a head's [batch, classes] logits)."""
    reference, output = np.asarray(reference, dtype=np.float64), np.asarray(output, dtype=np.float64)
    if reference.shape != output.shape:
        raise ValueError(f"output shape {output.shape} differs from PyTorch's {reference.shape}")
    if reference.ndim >= 3 and reference.shape[:2] == attention_mask.shape:
        keep = attention_mask.astype(bool)
        reference, output = reference[keep], output[keep]
    reference = reference.reshape(reference.shape[0], -1)
    output = output.reshape(output.shape[0], -1)
    norms = np.linalg.norm(reference, axis=1) * np.linalg.norm(output, axis=1)
    cosine = (reference * output).sum(axis=1) / np.maximum(norms, 1e-30)
    return {"cosine": float(cosine.mean()), "max_abs_error": float(np.abs(reference - output).max())}


def sentence_fidelity(reference: np.ndarray, output: np.ndarray, attention_mask: np.ndarray) -> dict:
    """core.fidelity's scores of an engine's sentence embeddings against PyTorch fp32's
    (hidden states [sentences, seq, hidden], mean-pooled over real tokens)."""
    import torch

    from core.fidelity import Outputs, fidelity, mean_pool

    mask = torch.from_numpy(attention_mask)

    def embed(hidden):
        return Outputs(embeddings=mean_pool(torch.from_numpy(np.ascontiguousarray(hidden, dtype=np.float32)),
                                            mask), logits=None)

    return fidelity(embed(reference), embed(output)).as_dict()
