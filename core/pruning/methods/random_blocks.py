"""``random``: what-if weights, block-sparse at random with each layer's own spread (speed, not accuracy)."""

from core.pruning.methods import register
from core.pruning.methods.block import BlockShaped
from core.pruning.random_weights import random_block_sparse


@register
class RandomBlockSparse(BlockShaped):
    name = "random"
    description = "what-if: random block-sparse weights for timing, not a real pruning"
    order = 30

    def prune(self, layers, config):
        """Each layer's own spread keeps activations in their usual range."""
        import torch

        for index, (name, module) in enumerate(layers.items()):
            weight = module.weight
            values = random_block_sparse(tuple(weight.shape), config.sparsity, config.block,
                                         seed=(config.seed, index), scale=float(weight.float().std()), name=name)
            weight.copy_(torch.from_numpy(values).to(weight.dtype))
