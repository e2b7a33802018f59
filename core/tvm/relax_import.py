"""A transformers model -> Relax IRModule, through torch.export, at a fixed batch and sequence length.

Weights become Relax constants (``keep_params_as_input=False``), so every Linear
arrives as ``matmul(x, permute_dims(W))`` with ``W`` a constant that the BSR
rewrite can inspect. Failures name the op that could not be captured or imported.
"""

from __future__ import annotations

import os
import traceback
from dataclasses import dataclass

from core.errors import SparseLabError

INPUT_NAMES = ("input_ids", "attention_mask")


@dataclass(frozen=True)
class InputShape:
    """The static shape the model is compiled for: ``batch`` sequences of ``seq_len`` tokens."""

    batch: int = 1
    seq_len: int = 128

    def __post_init__(self):
        if self.batch < 1 or self.seq_len < 1:
            raise SparseLabError(f"Batch ({self.batch}) and sequence length ({self.seq_len}) must be positive.")


def example_inputs(shape: InputShape, vocab_size: int, seed: int = 0) -> dict:
    """Token ids and an attention mask whose last quarter is padding, so masking is exercised."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab_size, (shape.batch, shape.seq_len), generator=generator)
    mask = torch.ones(shape.batch, shape.seq_len, dtype=torch.int64)
    mask[:, shape.seq_len - shape.seq_len // 4:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def _first_output(model):
    """``model`` wrapped so the exported graph takes (ids, mask) and returns one tensor
    (the last hidden state, or the logits of a task head)."""
    import torch

    class FirstOutput(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            out = self.model(input_ids=input_ids, attention_mask=attention_mask)
            return out if isinstance(out, torch.Tensor) else out[0]  # ModelOutput/tuple: first field

    return FirstOutput().eval()


def export_model(model, inputs: dict):
    """torch.export of ``model``; a capture failure becomes a SparseLabError naming the op."""
    import torch

    try:
        with torch.no_grad():
            return torch.export.export(_first_output(model), args=(), kwargs=inputs)
    except Exception as exc:  # torch raises many types here (Unsupported, UserError, RuntimeError ...)
        where = _model_source_line(exc)
        raise SparseLabError(f"torch.export cannot capture this model{where}: {_summary(exc)}") from exc


def to_relax(exported):
    """The exported program as a Relax IRModule with weights as constants."""
    from tvm.relax.frontend.torch import from_exported_program

    try:
        return from_exported_program(exported, keep_params_as_input=False)
    except Exception as exc:
        op = _failing_fx_node(exc)
        where = f" at op '{op}'" if op else ""
        raise SparseLabError(f"TVM's PyTorch importer failed{where}: {_summary(exc)}") from exc


def import_model(model, shape: InputShape):
    """``model`` (eval mode, already pruned if wanted) as a Relax IRModule for ``shape``."""
    inputs = example_inputs(shape, model.config.vocab_size)
    return to_relax(export_model(model, inputs))


def _model_source_line(exc: BaseException) -> str:
    """`` at file:line `code` `` of the innermost traceback frame outside torch (the model's op)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if f"{os.sep}torch{os.sep}" not in f.filename and f.filename != __file__]
    if not frames:
        return ""
    frame = frames[-1]
    return f" at {os.path.basename(frame.filename)}:{frame.lineno} `{(frame.line or '').strip()}`"


def _failing_fx_node(exc: BaseException) -> str | None:
    """The torch.fx node being translated when ``exc`` was raised, read from the traceback."""
    tb, found = exc.__traceback__, None
    while tb is not None:
        node = tb.tb_frame.f_locals.get("node")
        if node is not None and hasattr(node, "target") and hasattr(node, "op"):
            found = str(node.target)
        tb = tb.tb_next
    return found


def _summary(exc: BaseException, max_chars: int = 400) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    text = " ".join(lines[:3]) or type(exc).__name__
    return text if len(text) <= max_chars else text[:max_chars] + "..."
