"""Calibration text for the data-aware pruning methods (SparseGPT, Wanda): what a layer's inputs look like.

``core/data/corpus.txt`` holds one project-written English sentence per line (see ``CORPUS.md``), short
everyday and technical sentences like the ones the fidelity pairs ask the model to embed. A calibration
batch is a few of them, tokenized the way ``core.fidelity`` tokenizes (padded to the longest, truncated to
``seq_len``): the pruning methods see the activations of the task, padding excluded. A model without a
tokenizer gets seeded random token ids instead (``random_token_batches``), and the result says so.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from pathlib import Path

from core.errors import SparseLabError

CORPUS_PATH = Path(__file__).resolve().parent.parent / "data" / "corpus.txt"
WORDNET_PATH = Path(__file__).resolve().parent.parent / "data" / "wordnet.txt"  # scripts/wordnet_corpus.py
DEFAULT_SAMPLES = 512
DEFAULT_SEQ_LEN = 128
DEFAULT_BATCH_SIZE = 64
MIN_TOKENS = 2  # a sample needs at least one real token besides [CLS]/[SEP]-style specials


@functools.lru_cache(maxsize=1)
def _corpus() -> tuple[str, ...]:
    lines = CORPUS_PATH.read_text(encoding="utf-8").splitlines()
    return tuple(line.strip() for line in lines if line.strip())


def corpus_sentences(limit: int | None = None) -> list[str]:
    """The calibration corpus, one sentence per item, in file order (the first ``limit`` if given)."""
    sentences = list(_corpus())
    return sentences if limit is None else sentences[:max(0, int(limit))]


@functools.lru_cache(maxsize=1)
def _wordnet() -> tuple[str, ...]:
    lines = WORDNET_PATH.read_text(encoding="utf-8").splitlines()
    return tuple(line.strip() for line in lines if line.strip())


def wordnet_sentences() -> list[str]:
    """About 10,000 WordNet 3.0 example sentences and definitions (``core/data/CORPUS.md``): varied English on every
    topic, where the project corpus is written from templates."""
    return list(_wordnet())


# The shipped training texts. Measured (session 6, MiniLM 80% from SparseGPT masks, 400 steps, same seed):
# corpus 0.766 mean cosine on the evaluation pairs (0.936 on its own training text: it generalises poorly),
# wordnet 0.781, both 0.789.
SHIPPED_TEXTS = {"corpus": corpus_sentences, "wordnet": wordnet_sentences,
                 "both": lambda: corpus_sentences() + wordnet_sentences()}


def shipped_text(name: str) -> list[str]:
    if name not in SHIPPED_TEXTS:
        raise SparseLabError(f"Unknown shipped text '{name}': choose one of {', '.join(SHIPPED_TEXTS)}.")
    return SHIPPED_TEXTS[name]()


@dataclass(frozen=True)
class Calibration:
    """Model inputs to run for calibration, and where they came from (for the pruning result)."""

    batches: tuple[dict, ...]
    source: str  # "corpus", "text" or "random-token-ids"
    samples: int
    tokens: int  # real (unpadded) tokens over all samples

    def describe(self) -> dict:
        return {"source": self.source, "samples": self.samples, "tokens": self.tokens}


def _check_sizes(n_samples: int, seq_len: int, batch_size: int) -> None:
    if int(n_samples) < 1:
        raise SparseLabError(f"Calibration needs at least one sample, not {n_samples}.")
    if int(seq_len) < MIN_TOKENS:
        raise SparseLabError(f"Calibration sequence length {seq_len} is too short: give at least {MIN_TOKENS}.")
    if int(batch_size) < 1:
        raise SparseLabError(f"Calibration batch size must be positive, not {batch_size}.")


def calibration_batches(tokenizer, n_samples: int = DEFAULT_SAMPLES, seq_len: int = DEFAULT_SEQ_LEN,
                        batch_size: int = DEFAULT_BATCH_SIZE, seed: int = 0,
                        sentences: list[str] | None = None) -> list[dict]:
    """``n_samples`` sentences drawn without replacement (seeded) from ``sentences`` (default: the corpus),
    tokenized in batches of ``batch_size``: a list of dicts of tensors (input_ids, attention_mask, ...).

    Refuses empty text, text with fewer usable sentences than ``n_samples``, and bad sizes, with a
    SparseLabError saying what to change.
    """
    return list(calibration(tokenizer, n_samples, seq_len, batch_size, seed, sentences).batches)


def calibration(tokenizer, n_samples: int = DEFAULT_SAMPLES, seq_len: int = DEFAULT_SEQ_LEN,
                batch_size: int = DEFAULT_BATCH_SIZE, seed: int = 0,
                sentences: list[str] | None = None) -> Calibration:
    """``calibration_batches`` with a description of what was drawn."""
    _check_sizes(n_samples, seq_len, batch_size)
    source = "corpus" if sentences is None else "text"
    pool = [s.strip() for s in (corpus_sentences() if sentences is None else sentences) if s and s.strip()]
    if not pool:
        raise SparseLabError("The calibration text is empty: give some sentences (one per item), or use the "
                             "project corpus (core/data/corpus.txt).")
    usable = [s for s in pool if any(ch.isalnum() for ch in s)]  # something a tokenizer makes tokens of
    if len(usable) < n_samples:
        raise SparseLabError(f"The calibration text is too short: {len(usable)} usable sentences for "
                             f"{n_samples} samples; give more text or ask for at most {len(usable)} samples.")
    chosen = random.Random(seed).sample(usable, int(n_samples))
    chosen.sort(key=len)  # similar lengths together: less padding to run
    batches, tokens = [], 0
    for start in range(0, len(chosen), batch_size):
        batch = tokenizer(chosen[start:start + batch_size], padding=True, truncation=True, max_length=int(seq_len),
                          return_tensors="pt")
        tokens += int(batch["attention_mask"].sum())
        batches.append(dict(batch))
    return Calibration(tuple(batches), source, len(chosen), tokens)


def random_token_batches(vocab_size: int, n_samples: int = DEFAULT_SAMPLES, seq_len: int = 32,
                         batch_size: int = DEFAULT_BATCH_SIZE, seed: int = 0) -> Calibration:
    """Seeded random token ids, for models without a tokenizer: layer shapes right, statistics not text's."""
    import torch

    _check_sizes(n_samples, seq_len, batch_size)
    if int(vocab_size) < 1:
        raise SparseLabError(f"Random calibration needs a vocabulary size, not {vocab_size}.")
    generator = torch.Generator().manual_seed(int(seed))
    batches = []
    for start in range(0, int(n_samples), int(batch_size)):
        rows = min(int(batch_size), int(n_samples) - start)
        ids = torch.randint(0, int(vocab_size), (rows, int(seq_len)), generator=generator)
        batches.append({"input_ids": ids, "attention_mask": torch.ones_like(ids)})
    return Calibration(tuple(batches), "random-token-ids", int(n_samples), int(n_samples) * int(seq_len))


def as_calibration(given, tokenizer=None, seed: int = 0) -> Calibration:
    """A Calibration from what a caller passed: a Calibration, a list of model-input dicts, or a list of
    sentences (tokenized with ``tokenizer``). Refuses empty input."""
    if isinstance(given, Calibration):
        if not given.batches:
            raise SparseLabError("The calibration set is empty: give at least one batch of model inputs.")
        return given
    items = list(given or [])
    if not items:
        raise SparseLabError("The calibration set is empty: give sentences or batches of model inputs.")
    if all(isinstance(item, str) for item in items):
        if tokenizer is None:
            raise SparseLabError("Calibration sentences need the model's tokenizer; this model has none.")
        return calibration(tokenizer, len([s for s in items if s.strip()]) or 1, seed=seed, sentences=items)
    if not all(isinstance(item, dict) and "input_ids" in item for item in items):
        raise SparseLabError("Calibration must be sentences or dicts of model inputs with 'input_ids'.")
    tokens = sum(int(b["attention_mask"].sum()) if "attention_mask" in b else b["input_ids"].numel() for b in items)
    return Calibration(tuple(items), "batches", sum(int(b["input_ids"].shape[0]) for b in items), tokens)


# --- Layer inputs, block by block --------------------------------------------------------------------------

class _StopError(Exception):
    """Raised by the hook that catches the first block's inputs: the rest of the model need not run."""


def transformer_blocks(model, layers: dict) -> list[tuple[str, object, dict]]:
    """The model's repeated blocks that hold selected layers, in order: ``(prefix, block, {name: Linear})``.

    The blocks are the children of the ModuleList holding the most selected Linears (``encoder.layer`` in
    BERT and MiniLM); layers outside it are returned as one pseudo-block with ``block`` None.
    """
    import torch

    best, best_count = None, 0
    for prefix, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList):
            count = sum(1 for name in layers if name.startswith(prefix + "."))
            if count > best_count:
                best, best_count = (prefix, module), count
    out, placed = [], set()
    if best is not None:
        prefix, module_list = best
        for index, block in enumerate(module_list):
            block_prefix = f"{prefix}.{index}"
            inside = {n: m for n, m in layers.items() if n.startswith(block_prefix + ".")}
            placed.update(inside)
            out.append((block_prefix, block, inside))
    rest = {n: m for n, m in layers.items() if n not in placed}
    if rest:
        out.append(("", None, rest))
    return out


def _token_rows(x, mask):
    """The rows of a Linear's input that belong to real tokens (padding excluded), as ``(tokens, features)``."""
    if mask is not None and x.dim() == 3 and tuple(x.shape[:2]) == tuple(mask.shape):
        return x[mask.bool()]
    return x.reshape(-1, x.shape[-1])


class _InputStats:
    """Accumulates ``X^T X`` (float64) of a Linear's real-token inputs, and notes which tensor fed it."""

    def __init__(self, features: int):
        import torch

        self.xtx = torch.zeros(features, features, dtype=torch.float64)
        self.count = 0
        self.source = None

    def add(self, x, mask) -> None:
        rows = _token_rows(x.detach(), mask).float()
        self.xtx += (rows.T @ rows).double()
        self.count += rows.shape[0]

    def hessian(self):
        """``2 X^T X / n``: the Hessian of the layer's squared output error (what SparseGPT calls H)."""
        return self.xtx * (2.0 / max(self.count, 1))


def _collect(run, modules: dict, state: dict) -> dict:
    """Run ``run()`` with hooks on ``modules`` ({name: Linear}); each gets its input statistics."""
    stats = {name: _InputStats(module.in_features) for name, module in modules.items()}
    handles = []
    for name, module in modules.items():
        def hook(_module, inputs, _output, name=name):
            stats[name].add(inputs[0], state.get("mask"))
            if stats[name].source is None:
                stats[name].source = id(inputs[0])
        handles.append(module.register_forward_hook(hook))
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
    return stats


def sequential_prune(model, layers: dict, batches, prune_layer) -> None:
    """Prune ``layers`` block by block, each with the inputs the already pruned model gives it.

    The first block's inputs are caught once; within a block, the Linears that read the same tensor (query,
    key, value) are pruned together, then the block is run again so the next Linears (attention output,
    FFN) see what the pruned ones before them produce; the pruned block's outputs are the next block's
    inputs. ``prune_layer(name, module, hessian, tokens)`` changes one Linear's weight in place.
    """
    import torch

    blocks = transformer_blocks(model, layers)
    with torch.no_grad():
        inputs = _block_inputs(model, blocks[0][1], batches) if blocks[0][1] is not None else None
        for _prefix, block, block_layers in blocks:
            if block is None:  # selected Linears outside the repeated blocks: one pass of the whole model
                state: dict = {}
                _prune_groups(block_layers, lambda state=state: _run_model(model, batches, state), state,
                              prune_layer)
                continue
            state = {}
            _prune_groups(block_layers, lambda block=block, state=state: _run_block(block, inputs, state), state,
                          prune_layer)
            inputs = [(_replace_hidden(args, kwargs, _run_one(block, args, kwargs)), mask)
                      for (args, kwargs), mask in inputs]


def _prune_groups(block_layers: dict, run, state: dict, prune_layer) -> None:
    remaining = dict(block_layers)
    while remaining:
        stats = _collect(run, remaining, state)
        first = next(iter(remaining))
        group = [n for n in remaining if stats[n].source is not None and stats[n].source == stats[first].source]
        for name in group or [first]:
            prune_layer(name, remaining[name], stats[name].hessian(), stats[name].count)
            del remaining[name]


def _block_inputs(model, block, batches) -> list:
    """``[((args, kwargs), attention_mask)]`` per batch: what the first block is called with."""
    caught = []

    def hook(_module, args, kwargs):
        caught.append((args, kwargs))
        raise _StopError

    handle = block.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        for batch in batches:
            try:
                model(**batch)
            except _StopError:
                pass
    finally:
        handle.remove()
    if len(caught) != len(batches):
        raise SparseLabError("Could not catch the inputs of the model's first transformer block.")
    return [(call, batch.get("attention_mask")) for call, batch in zip(caught, batches)]


def _run_one(block, args, kwargs):
    out = block(*args, **kwargs)
    return out[0] if isinstance(out, (tuple, list)) else out


def _run_block(block, inputs, state: dict) -> None:
    for (args, kwargs), mask in inputs:
        state["mask"] = mask
        _run_one(block, args, kwargs)


def _run_model(model, batches, state: dict) -> None:
    for batch in batches:
        state["mask"] = batch.get("attention_mask")
        model(**batch)


def _replace_hidden(args, kwargs, hidden):
    if args:
        return (hidden, *args[1:]), kwargs
    return args, {**kwargs, "hidden_states": hidden}
