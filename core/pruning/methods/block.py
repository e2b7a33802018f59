"""``block``: remove whole rows x columns blocks with the lowest L2 (or L1) norm, the zeros BSR kernels skip."""

from core.pruning.block import block_masks, check_divisible, format_block
from core.pruning.magnitude import SCOPES
from core.pruning.methods import PruningMethod, register


class BlockShaped(PruningMethod):
    """A method whose zeros come in ``config.block`` blocks: the block must divide every layer it prunes."""

    spec_key = "block"

    def check(self, name, shape, config):
        check_divisible(name, shape, config.block)

    def pattern(self, config):
        return format_block(config.block)


@register
class Block(BlockShaped):
    name = "block"
    description = "whole blocks (out x in) with the lowest norm go"
    scopes = SCOPES
    order = 10

    def keep_masks(self, weights, config):
        return block_masks(weights, config.sparsity, config.block, config.scope, config.norm)
