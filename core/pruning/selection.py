"""Which Linear layers a pruning touches.

By default the transformer blocks' Linear layers only: every layer whose name
contains ``encoder.`` (``encoder.layer.3.intermediate.dense`` in BERT and
MiniLM, ``bert.encoder...`` under a task head), so that embeddings, the pooler
and task heads, small and sensitive, stay dense. Patterns override the default:
a shell glob matched against the whole name (``*attention*``), a plain word
matched anywhere in the name (``intermediate``), or a regular expression after
``re:`` searched in the name (``re:layer\\.[0-2]\\.``).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence

from core.errors import SparseLabError
from core.model_source import linear_layers

DEFAULT_PATTERNS = ("encoder.",)
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


def select_linear_layers(model, patterns: Sequence[str] | None = None, exclude: Sequence[str] = ()) -> dict:
    """The Linear layers matching any of ``patterns`` and none of ``exclude``; never empty."""
    patterns = tuple(patterns or DEFAULT_PATTERNS)
    layers = linear_layers(model)
    for pattern in (*patterns, *exclude):
        if not any(matches(name, pattern) for name in layers):
            raise SparseLabError(f"Layer pattern '{pattern}' matches none of the model's {len(layers)} Linear "
                                 f"layers (e.g. {', '.join(list(layers)[:3])}); give patterns that name "
                                 "the layers to prune.")
    selected = {name: module for name, module in layers.items()
                if any(matches(name, p) for p in patterns) and not any(matches(name, p) for p in exclude)}
    if not selected:
        raise SparseLabError(f"The layer patterns {', '.join(patterns)} minus the exclusions "
                             f"{', '.join(exclude)} leave no Linear layer to prune.")
    return selected
