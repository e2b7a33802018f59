"""``block``: remove whole rows x columns blocks with the lowest L2 (or L1) norm, the zeros BSR kernels skip."""

from core.pruning.block import block_masks, check_divisible, format_block
from core.pruning.magnitude import SCOPES
from core.pruning.methods import PruningMethod, register


@register
class Block(PruningMethod):
    name = "block"
    description = "whole blocks (out x in) with the lowest norm go"
    spec_key = "block"
    scopes = SCOPES
    order = 10

    def check(self, name, shape, config):
        check_divisible(name, shape, config.block)

    def pattern(self, config):
        return format_block(config.block)

    def keep_masks(self, weights, config):
        return block_masks(weights, config.sparsity, config.block, config.scope, config.norm)
