"""How far a pruned model's outputs drift from the dense model's, on sentences with known answers.

Sentence embeddings are made the way sentence-transformers makes them for
all-MiniLM-L6-v2 (mean of the last hidden states over real tokens, then L2
normalised), so the bundled MiniLM is scored as the model it was trained to be.
Three numbers: the cosine of each sentence's pruned embedding with its dense
one (mean and worst), paraphrase retrieval (is each sentence's nearest
neighbour its partner?) and, for classification heads, how often the pruned
model's top-1 class agrees with the dense model's.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

PAIRS_PATH = Path(__file__).resolve().parent / "data" / "sentence_pairs.json"
MAX_TOKENS = 256  # all-MiniLM-L6-v2's max_seq_length


@functools.lru_cache(maxsize=1)
def sentence_pairs() -> tuple[tuple[str, str], ...]:
    """The project's paraphrase pairs (core/data/sentence_pairs.json)."""
    pairs = json.loads(PAIRS_PATH.read_text(encoding="utf-8"))["pairs"]
    return tuple((pair["a"], pair["b"]) for pair in pairs)


def pair_sentences(pairs) -> list[str]:
    """All first sentences, then all second ones: sentence i's partner is (i + n) mod 2n."""
    return [a for a, _ in pairs] + [b for _, b in pairs]


@dataclass(frozen=True)
class Outputs:
    """A model's answers for a list of sentences: unit-length embeddings, and class logits if it has a head."""

    embeddings: object
    logits: object | None


def mean_pool(hidden, attention_mask):
    """Average of the token vectors, padding excluded, L2-normalised."""
    import torch

    weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1)


def model_outputs(model, tokenizer, sentences: list[str], batch_size: int = 64) -> Outputs:
    import torch

    embeddings, logits = [], []
    with torch.no_grad():
        for start in range(0, len(sentences), batch_size):
            batch = tokenizer(sentences[start:start + batch_size], padding=True, truncation=True,
                              max_length=MAX_TOKENS, return_tensors="pt")
            out = model(**batch, output_hidden_states=True)
            embeddings.append(mean_pool(out.hidden_states[-1], batch["attention_mask"]))
            if getattr(out, "logits", None) is not None:
                logits.append(out.logits)
    return Outputs(embeddings=torch.cat(embeddings), logits=torch.cat(logits) if logits else None)


def retrieval_accuracy(embeddings) -> float:
    """Fraction of sentences whose most similar other sentence is their paraphrase partner."""
    import torch

    count = embeddings.shape[0]
    similarity = embeddings @ embeddings.T
    similarity.fill_diagonal_(-float("inf"))
    partners = (torch.arange(count) + count // 2) % count
    return float((similarity.argmax(dim=1) == partners).float().mean())


@dataclass(frozen=True)
class Fidelity:
    mean_cosine: float
    min_cosine: float
    retrieval_accuracy: float
    top1_agreement: float | None = None

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def fidelity(dense: Outputs, pruned: Outputs) -> Fidelity:
    """The pruned model's outputs scored against the dense model's on the same sentences."""
    cosine = (dense.embeddings * pruned.embeddings).sum(dim=1)
    agreement = None
    if dense.logits is not None and pruned.logits is not None:
        agreement = float((dense.logits.argmax(dim=1) == pruned.logits.argmax(dim=1)).float().mean())
    return Fidelity(mean_cosine=float(cosine.mean()), min_cosine=float(cosine.min()),
                    retrieval_accuracy=retrieval_accuracy(pruned.embeddings), top1_agreement=agreement)
