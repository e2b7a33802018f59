"""Bit-exactness: a reloaded model must give the very same outputs, not merely close ones."""

from __future__ import annotations

import numpy as np
import torch


def random_inputs(vocab_size: int, max_length: int, count: int = 20, seed: int = 0) -> list[dict]:
    """``count`` random batches: batch 1-4, length 8-128, each row padded at a random point."""
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(count):
        batch, length = int(rng.integers(1, 5)), int(rng.integers(8, min(128, max_length) + 1))
        ids = torch.from_numpy(rng.integers(0, vocab_size, size=(batch, length)))
        kept = rng.integers(1, length + 1, size=batch)
        mask = torch.from_numpy((np.arange(length)[None, :] < kept[:, None]).astype(np.int64))
        batches.append({"input_ids": ids, "attention_mask": mask})
    return batches


def _tensors(output) -> list[torch.Tensor]:
    if isinstance(output, torch.Tensor):
        return [output]
    values = output.values() if hasattr(output, "values") else output
    return [t for v in values for t in _tensors(v)]


def outputs_equal(model_a: torch.nn.Module, model_b: torch.nn.Module, inputs: list[dict]) -> bool:
    with torch.no_grad():
        for batch in inputs:
            if not all(torch.equal(a, b) for a, b in zip(_tensors(model_a(**batch)), _tensors(model_b(**batch)))):
                return False
    return True
