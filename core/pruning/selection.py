"""Which Linear layers a pruning touches, and why.

By default the layers are found from the model's structure, not its names: the
Linear layers inside the repeated transformer blocks, i.e. the children of a
``ModuleList`` whose entries are all the same block class (``encoder.layer`` in
BERT and MiniLM, ``transformer.layer`` in DistilBERT, ``h`` in GPT-2,
``model.decoder.layers`` in OPT, ``model.layers`` in Llama; an encoder-decoder
has two such lists and both count). Embeddings, poolers and task heads
(``lm_head``, ``classifier``, ``qa_outputs`` ...), small and sensitive, stay
dense. For BERT and MiniLM this is exactly the set the former default pattern
``encoder.`` selected.

Patterns override the default: a shell glob matched against the whole name
(``*attention*``), a plain word matched anywhere in the name
(``intermediate``), or a regular expression after ``re:`` searched in the name
(``re:layer\\.[0-2]\\.``). ``selection_report`` says for every Linear layer why
it is in or out.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass

from core.errors import SparseLabError
from core.model_source import linear_layers

LEGACY_PATTERNS = ("encoder.",)  # the name-based default before selection by structure (BERT and MiniLM)
# Path parts that name a task head or pooler (the model's output side, not its blocks).
HEAD_PARTS = frozenset({"lm_head", "pooler", "classifier", "qa_outputs", "pre_classifier", "score", "cls",
                        "vocab_transform", "vocab_projector", "embed_out", "output_projection", "head",
                        "seq_relationship", "predictions"})
_GLOB_CHARS = set("*?[")


def matches(name: str, pattern: str) -> bool:
    if pattern.startswith("re:"):
        try:
            return re.search(pattern[3:], name) is not None
        except re.error as exc:
            raise SparseLabError(f"Layer pattern '{pattern}' is not a valid regular expression: {exc}") from exc
    if _GLOB_CHARS & set(pattern):
        return fnmatch.fnmatchcase(name, pattern)
    return pattern in name


@dataclass(frozen=True)
class BlockList:
    """A ``ModuleList`` of repeated blocks: its path, the block class and how many blocks."""

    path: str
    block_class: str
    count: int

    def describe(self) -> str:
        return f"{self.path or '(model)'} ({self.count} repeated {self.block_class} block{'s' * (self.count != 1)})"


@dataclass(frozen=True)
class Selection:
    """The chosen layers ({name: Linear}), why each Linear layer is in or out, and how they were chosen
    (``selected_by``: "structure" for the default, "pattern" when patterns were given)."""

    layers: dict
    reasons: dict
    selected_by: str
    blocks: tuple[BlockList, ...] = ()

    def as_dict(self) -> dict:
        return {"selected_by": self.selected_by, "blocks": [b.describe() for b in self.blocks],
                "reasons": dict(self.reasons)}


def block_lists(model) -> tuple[BlockList, ...]:
    """The outermost ``ModuleList``s whose entries are all one block class holding Linear layers."""
    import torch

    found: list[BlockList] = []
    for path, module in model.named_modules():
        if not isinstance(module, torch.nn.ModuleList) or len(module) == 0:
            continue
        if any(path.startswith(f"{outer.path}.") for outer in found):
            continue  # a list inside a block (experts, sub-layers): the block list above already counts
        classes = {type(child) for child in module}
        if len(classes) != 1 or isinstance(module[0], torch.nn.Linear):
            continue
        if not any(isinstance(m, torch.nn.Linear) for m in module.modules()):
            continue
        found.append(BlockList(path, classes.pop().__name__, len(module)))
    return tuple(found)


def _block_of(name: str, blocks: tuple[BlockList, ...]) -> tuple[BlockList, int] | None:
    for block in blocks:
        prefix = f"{block.path}." if block.path else ""
        if name.startswith(prefix):
            index = name[len(prefix):].split(".", 1)[0]
            if index.isdigit():
                return block, int(index)
    return None


def _outside_reason(model, name: str) -> str:
    parts = name.split(".")
    base = getattr(model, "base_model_prefix", "")
    if HEAD_PARTS & set(parts) or (base and hasattr(model, base) and parts[0] != base):
        return "out: task head"
    if any("embed" in part for part in parts):
        return "out: embeddings"
    return "out: outside the repeated blocks"


def structure_selection(model) -> Selection:
    """The default: every Linear layer inside the repeated blocks, with a reason for each Linear layer."""
    layers = linear_layers(model)
    blocks = block_lists(model)
    if not blocks:
        raise SparseLabError(f"Found no repeated transformer blocks (a ModuleList of identical layers) among the "
                             f"model's {len(layers)} Linear layers (e.g. {', '.join(list(layers)[:3])}); give "
                             "layer patterns that name the layers to prune.")
    selected, reasons = {}, {}
    for name, module in layers.items():
        where = _block_of(name, blocks)
        if where is None:
            reasons[name] = _outside_reason(model, name)
            continue
        block, index = where
        selected[name] = module
        reasons[name] = f"in: block {index} of {block.path} ({block.count} repeated blocks)"
    return Selection(selected, reasons, "structure", blocks)


def pattern_selection(model, patterns: Sequence[str], exclude: Sequence[str] = ()) -> Selection:
    """The Linear layers matching any of ``patterns`` (all of them when None) and none of ``exclude``."""
    layers = linear_layers(model)
    for pattern in (*patterns, *exclude):
        if not any(matches(name, pattern) for name in layers):
            raise SparseLabError(f"Layer pattern '{pattern}' matches none of the model's {len(layers)} Linear "
                                 f"layers (e.g. {', '.join(list(layers)[:3])}); give patterns that name "
                                 "the layers to prune.")
    selected, reasons = {}, {}
    for name, module in layers.items():
        hit = next((p for p in patterns if matches(name, p)), None)
        if hit is None:
            reasons[name] = "out: matches no layer pattern"
        else:
            selected[name] = module
            reasons[name] = f"in: matches pattern '{hit}'"
    return Selection(selected, reasons, "pattern")


def selection_report(model, patterns: Sequence[str] | None = None, exclude: Sequence[str] = ()) -> Selection:
    """The layers a pruning with these ``patterns`` and ``exclude`` takes, and why each layer is in or out;
    never empty. No patterns: selection by structure."""
    if patterns:
        selection = pattern_selection(model, tuple(patterns), exclude)
    else:
        selection = structure_selection(model)
        layers = linear_layers(model)
        for pattern in exclude:
            if not any(matches(name, pattern) for name in layers):
                raise SparseLabError(f"Layer pattern '{pattern}' matches none of the model's {len(layers)} "
                                     f"Linear layers (e.g. {', '.join(list(layers)[:3])}); give patterns that "
                                     "name the layers to keep dense.")
    chosen, reasons = dict(selection.layers), dict(selection.reasons)
    for name in list(chosen):
        hit = next((p for p in exclude if matches(name, p)), None)
        if hit is not None:
            del chosen[name]
            reasons[name] = f"out: excluded by '{hit}'"
    if not chosen:
        given = f"The layer patterns {', '.join(patterns)}" if patterns else "The repeated blocks' Linear layers"
        raise SparseLabError(f"{given} minus the exclusions {', '.join(exclude)} leave no Linear layer to prune.")
    return Selection(chosen, reasons, selection.selected_by, selection.blocks)


def select_linear_layers(model, patterns: Sequence[str] | None = None, exclude: Sequence[str] = ()) -> dict:
    """The Linear layers to prune ({name: Linear}): by structure, or matching any of ``patterns``, minus those
    matching ``exclude``; never empty (``selection_report`` says why each layer is in or out)."""
    return selection_report(model, patterns, exclude).layers
