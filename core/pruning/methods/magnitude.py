"""``magnitude``: remove the weights closest to zero, per layer or with one global threshold."""

from core.pruning.magnitude import SCOPES, magnitude_masks
from core.pruning.methods import PruningMethod, register


@register
class Magnitude(PruningMethod):
    name = "magnitude"
    description = "unstructured: the smallest |w| go"
    spec_key = "scope"
    scopes = SCOPES
    order = 0

    def keep_masks(self, weights, config):
        return magnitude_masks(weights, config.sparsity, config.scope)
