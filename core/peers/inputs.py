"""The inputs every peer sees: one timing input, sentence batches for fidelity, calibration samples.

All are int64 numpy arrays at the one static shape the engines are built for
(``batch`` x ``seq_len``). The timing input is ``core.tvm.relax_import.example_inputs``
(seeded token ids, last quarter padding), the same one the TVM benchmark times.
Sentences are padded to ``seq_len``; a last short group is filled by repeating
its final sentence, and the extra rows are dropped again by ``unbatch``.
Batches travel to worker processes as one ``.npz`` file (``input_ids`` and
``attention_mask`` of shape [groups, batch, seq_len]).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.tvm.relax_import import InputShape, example_inputs

CALIBRATION_SAMPLES = 32
CALIBRATION_SEED = 1


def timing_inputs(shape: InputShape, vocab_size: int) -> dict[str, np.ndarray]:
    return {name: tensor.numpy() for name, tensor in example_inputs(shape, vocab_size).items()}


def sentence_batches(tokenizer, sentences: list[str], shape: InputShape) -> dict[str, np.ndarray]:
    """``sentences`` tokenized to ``seq_len`` (truncated or padded), grouped ``batch`` at a time."""
    encoded = tokenizer(list(sentences), padding="max_length", truncation=True, max_length=shape.seq_len,
                        return_tensors="np")
    count = len(sentences)
    groups = -(-count // shape.batch)
    rows = np.concatenate([np.arange(count), np.full(groups * shape.batch - count, count - 1)])
    return {name: np.ascontiguousarray(encoded[name][rows].astype(np.int64)
                                       .reshape(groups, shape.batch, shape.seq_len))
            for name in ("input_ids", "attention_mask")}


def one_batch(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A single input as a batch file's worth of groups (one group)."""
    return {name: value[None] for name, value in inputs.items()}


def unbatch(stacked: np.ndarray, count: int) -> np.ndarray:
    """[groups, batch, ...] outputs back to one row per sentence, without the filler rows."""
    return stacked.reshape(-1, *stacked.shape[2:])[:count]


def groups(batches: dict[str, np.ndarray]):
    """Each group of a batch file as an engine input."""
    for index in range(batches["input_ids"].shape[0]):
        yield {name: np.ascontiguousarray(value[index]) for name, value in batches.items()}


def save_batches(path: Path, batches: dict[str, np.ndarray]) -> Path:
    np.savez(path, **batches)
    return Path(path)


def load_batches(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {name: data[name] for name in data.files}


def calibration_samples(model, shape: InputShape,
                        count: int = CALIBRATION_SAMPLES) -> tuple[list[dict[str, np.ndarray]], str]:
    """``count`` calibration inputs and what they are: real sentences (core/fidelity.py's pairs, tokenized)
    when the model has a tokenizer, else seeded random token ids with the timing input's padding."""
    if model.has_tokenizer:
        from core.fidelity import pair_sentences, sentence_pairs

        sentences = pair_sentences(sentence_pairs())
        chosen = [sentences[i % len(sentences)] for i in range(count * shape.batch)]
        return list(groups(sentence_batches(model.load_tokenizer(), chosen, shape))), "sentence pairs"
    samples = [{name: tensor.numpy() for name, tensor in
                example_inputs(shape, model.vocab_size, seed=CALIBRATION_SEED + i).items()} for i in range(count)]
    return samples, f"random token ids (seeds {CALIBRATION_SEED}..{CALIBRATION_SEED + count - 1})"
