"""Pruning of a transformer's Linear layers, in place, as dense weights with zeros.

Dense-with-zeros is the hand-off format to storage, TVM and export: every later
stage can read it without knowing how it was pruned. One concept per module:
``selection`` (which layers), ``magnitude``, ``block``, ``m_by_n``,
``random_weights`` (what-if weights), ``stats`` (what a pruning did),
``apply`` (``PruneConfig`` -> ``prune_model``) and ``save`` (a loadable folder).
"""

from core.pruning.apply import METHODS, PruneConfig, PruneResult, plan, prune_model
from core.pruning.random_weights import random_block_sparse
from core.pruning.selection import linear_layers, select_linear_layers
from core.pruning.stats import Heatmap, LayerSparsity, heatmap, layer_sparsities

__all__ = ["METHODS", "Heatmap", "LayerSparsity", "PruneConfig", "PruneResult", "heatmap", "layer_sparsities",
           "linear_layers", "plan", "prune_model", "random_block_sparse", "select_linear_layers"]
