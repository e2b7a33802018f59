"""``mn``: keep the m largest of every n consecutive weights along the input dimension (2:4)."""

from core.errors import SparseLabError
from core.pruning.m_by_n import check_groups, check_mn, mn_mask, mn_sparsity
from core.pruning.methods import PruningMethod, register


@register
class MByN(PruningMethod):
    name = "mn"
    description = "m nonzeros in every n along the input dimension; sets its own sparsity (2:4 is 50%)"
    spec_key = "mn"
    order = 20
    sets_own_sparsity = True

    def fixed_sparsity(self, config):
        return mn_sparsity(config.m, config.n)

    def target_sparsity(self, config):
        return self.fixed_sparsity(config)

    def validate(self, config):
        check_mn(config.m, config.n)

    def check_requested_sparsity(self, config, requested):
        if requested not in (None, self.fixed_sparsity(config)):
            raise SparseLabError(f"m:n {config.m}:{config.n} prunes exactly {self.fixed_sparsity(config):g} of the "
                                 f"weights; it cannot reach sparsity {requested} (leave the sparsity out).")

    def check(self, name, shape, config):
        check_groups(name, shape, config.n)

    def pattern(self, config):
        return f"{config.m}:{config.n}"

    def label(self, config):
        return self.pattern(config)

    def keep_masks(self, weights, config):
        return [mn_mask(w, config.m, config.n) for w in weights]
