"""How far a pruned model's outputs drift from the dense model's, on sentences with known answers.

Sentence embeddings are made the way sentence-transformers makes them for
all-MiniLM-L6-v2 (mean of the last hidden states over real tokens, then L2
normalised), so the bundled MiniLM is scored as the model it was trained to be.
Encoders get three numbers: the cosine of each sentence's pruned embedding with its dense
one (mean and worst), paraphrase retrieval (is each sentence's nearest
neighbour its partner?) and, for classification heads, how often the pruned
model's top-1 class agrees with the dense model's.

Decoders (a model with an LM head) are scored on next tokens over the same
sentences: how often the pruned model's top-1 next token agrees with the dense
model's, at every real position, and the ratio of their perplexities. A decoder
without a tokenizer (the random-weight tiny families) is scored on seeded random
token ids instead, and the result's ``note`` says so.
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


# Decoders (GPT-2, OPT, Llama ...): next-token predictions instead of sentence embeddings.

RANDOM_SEQUENCES = 32  # without a tokenizer: this many seeded random token sequences ...
RANDOM_LENGTH = 32  # ... of this many tokens
RANDOM_SEED = 0


@dataclass(frozen=True)
class TokenBatches:
    """Model inputs for next-token scoring: (input_ids, attention_mask) pairs, right-padded, and where they
    came from (``note`` says when they are random ids rather than text)."""

    batches: tuple
    source: str  # "sentence pairs" or "random token ids"
    note: str = ""

    @property
    def tokens(self) -> int:
        return int(sum(int(mask.sum()) for _, mask in self.batches))


def decoder_inputs(tokenizer, vocab_size: int, sentences: list[str] | None = None,
                   batch_size: int = 32) -> TokenBatches:
    """The evaluation sentences (``sentence_pairs``, disjoint from the calibration corpus) tokenized, or, for
    a model without a tokenizer, seeded random token ids (and a note saying so)."""
    import torch

    if tokenizer is None:
        generator = torch.Generator().manual_seed(RANDOM_SEED)
        ids = torch.randint(0, vocab_size, (RANDOM_SEQUENCES, RANDOM_LENGTH), generator=generator)
        mask = torch.ones_like(ids)
        batches = tuple((ids[i:i + batch_size], mask[i:i + batch_size]) for i in range(0, len(ids), batch_size))
        return TokenBatches(batches, "random token ids",
                            f"no tokenizer: scored on {RANDOM_SEQUENCES} seeded random sequences of {RANDOM_LENGTH} "
                            "token ids, not text (agreement and perplexity ratio still compare pruned with dense)")
    sentences = sentences if sentences is not None else pair_sentences(sentence_pairs())
    batches = []
    for start in range(0, len(sentences), batch_size):
        encoded = [tokenizer(s, truncation=True, max_length=MAX_TOKENS)["input_ids"]
                   for s in sentences[start:start + batch_size]]
        length = max(len(e) for e in encoded)
        ids = torch.zeros(len(encoded), length, dtype=torch.long)
        mask = torch.zeros(len(encoded), length, dtype=torch.long)
        for row, tokens in enumerate(encoded):
            ids[row, :len(tokens)] = torch.tensor(tokens, dtype=torch.long)
            mask[row, :len(tokens)] = 1
        batches.append((ids, mask))
    return TokenBatches(tuple(batches), "sentence pairs")


@dataclass(frozen=True)
class NextTokens:
    """A decoder's answers on ``TokenBatches``: its top-1 next token at every real position, and the negative
    log-likelihood of the actual next token wherever there is one."""

    top1: object
    nll: object


def next_token_outputs(model, inputs: TokenBatches) -> NextTokens:
    """Full-sequence forward passes (causal mask, no KV cache) of a model with an LM head."""
    import torch

    top1, nll = [], []
    with torch.no_grad():
        for ids, mask in inputs.batches:
            logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits.float()
            real = mask.bool()
            top1.append(logits.argmax(dim=-1)[real])
            has_next = real[:, 1:] & real[:, :-1]
            losses = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none")
            nll.append(losses[has_next])
    return NextTokens(torch.cat(top1), torch.cat(nll))


@dataclass(frozen=True)
class DecoderFidelity:
    next_token_agreement: float  # fraction of positions where pruned and dense predict the same next token
    perplexity_ratio: float  # pruned perplexity / dense perplexity on the same tokens (1.0: no change)
    dense_perplexity: float
    pruned_perplexity: float
    tokens: int
    source: str
    note: str = ""

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v != ""}


def decoder_fidelity(dense: NextTokens, pruned: NextTokens, inputs: TokenBatches) -> DecoderFidelity:
    import math

    agreement = float((dense.top1 == pruned.top1).float().mean())
    dense_ppl, pruned_ppl = math.exp(float(dense.nll.mean())), math.exp(float(pruned.nll.mean()))
    return DecoderFidelity(next_token_agreement=agreement, perplexity_ratio=pruned_ppl / dense_ppl,
                           dense_perplexity=dense_ppl, pruned_perplexity=pruned_ppl, tokens=int(dense.top1.numel()),
                           source=inputs.source, note=inputs.note)
