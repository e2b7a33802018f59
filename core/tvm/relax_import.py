"""A transformers model -> Relax IRModule, through torch.export, at a fixed batch and sequence length.

Weights become Relax constants (``keep_params_as_input=False``), so every Linear
arrives as ``matmul(x, permute_dims(W))`` with ``W`` a constant that the BSR
rewrite can inspect. Failures name the op that could not be captured or imported
and, for the importer, the model's module it belongs to (read from the exported
graph's ``nn_module_stack`` metadata), e.g. "op 'aten.foo.default' in
transformer.h.0.attn (GPT2Attention)".

Decoders are exported as one full-sequence forward (``use_cache=False``: the
causal mask, no KV cache), returning the LM head's logits or the last hidden state.
"""

from __future__ import annotations

import os
import re
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


def forward_options(model) -> dict:
    """Extra forward arguments for a traced whole-sequence pass: ``use_cache=False`` for models that take it
    (decoders: one full-sequence forward with the causal mask, no KV cache in or out of the graph)."""
    import inspect

    return {"use_cache": False} if "use_cache" in inspect.signature(model.forward).parameters else {}


def first_output(model):
    """``model`` wrapped so the exported graph takes (ids, mask) and returns one tensor
    (the last hidden state, or the logits of a task head such as a decoder's LM head)."""
    import torch

    options = forward_options(model)

    class FirstOutput(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            out = self.model(input_ids=input_ids, attention_mask=attention_mask, **options)
            return out if isinstance(out, torch.Tensor) else out[0]  # ModelOutput/tuple: first field

    return FirstOutput().eval()


def export_model(model, inputs: dict):
    """torch.export of ``model``; a capture failure becomes a SparseLabError naming the op."""
    import torch

    try:
        with torch.no_grad():
            return torch.export.export(first_output(model), args=(), kwargs=inputs)
    except Exception as exc:  # torch raises many types here (Unsupported, UserError, RuntimeError ...)
        where = _model_source_line(exc)
        raise SparseLabError(f"torch.export cannot capture this model{where}: {_summary(exc)}") from exc


def to_relax(exported):
    """The exported program as a Relax IRModule with weights as constants; an importer failure names the
    op and the module of the model it belongs to."""
    from tvm.relax.frontend.torch import from_exported_program

    try:
        return from_exported_program(exported, keep_params_as_input=False)
    except Exception as exc:
        where = "; ".join(f"op '{op}'" + (f" in {module}" if module else "")
                          for op, module in failing_ops(exc, exported))
        raise SparseLabError(f"TVM's PyTorch importer failed"
                             f"{f' ({where})' if where else ''}: {_summary(exc)}") from exc


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


def _traceback_local(exc: BaseException, name: str, accept) -> object | None:
    """The innermost traceback frame's local ``name`` that ``accept`` takes."""
    tb, found = exc.__traceback__, None
    while tb is not None:
        value = tb.tb_frame.f_locals.get(name)
        if value is not None and accept(value):
            found = value
        tb = tb.tb_next
    return found


def _is_fx_node(value) -> bool:
    return hasattr(value, "target") and hasattr(value, "op") and hasattr(value, "meta")


def module_path(node) -> str | None:
    """The model's module an exported graph node comes from, as "path (Class)", from ``nn_module_stack``
    (the export wrapper's ``model.`` prefix dropped)."""
    stack = node.meta.get("nn_module_stack") if hasattr(node, "meta") else None
    if not stack:
        return None
    path, kind = list(stack.values())[-1]
    path = re.sub(r"^L\['self'\]\.?", "", str(path))
    path = re.sub(r"^model\.?", "", path) or "(model)"
    class_name = getattr(kind, "__name__", None) or str(kind).rsplit(".", 1)[-1].strip("'>")
    return f"{path} ({class_name})"


def _op_name(target) -> str:
    return getattr(target, "__name__", None) or str(target)


def failing_ops(exc: BaseException, exported=None) -> list[tuple[str, str | None]]:
    """``(op, module)`` for what the importer could not take: the node it was translating when ``exc`` was
    raised, or each op its up-front check names as unsupported (looked up in the graph it checked)."""
    node = _traceback_local(exc, "node", _is_fx_node)
    if node is not None:
        return [(str(node.target), module_path(node))]
    unsupported = re.search(r"Unsupported function types \[(.*?)\]", str(exc))
    if not unsupported:
        return []
    names = re.findall(r"'([^']+)'", unsupported.group(1))
    nodes = _traceback_local(exc, "nodes", lambda v: hasattr(v, "__iter__"))
    if nodes is None and exported is not None:
        nodes = exported.graph.nodes
    found = []
    for name in names:
        match = next((n for n in (nodes or ()) if n.op == "call_function" and _op_name(n.target) == name), None)
        found.append((name, module_path(match) if match is not None else None))
    return found


def _summary(exc: BaseException, max_chars: int = 400) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    text = " ".join(lines[:3]) or type(exc).__name__
    return text if len(text) <= max_chars else text[:max_chars] + "..."
