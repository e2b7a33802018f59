"""TVM 0.27 compilation of transformers with block-sparse (BSR) Linear layers.

One concept per module: ``target`` (host CPU target, runtime threads),
``relax_import`` (torch.export -> Relax), ``bsr_format`` (dense -> BSR arrays),
``bsr_kernel`` and ``dense_kernel`` (scheduled TIR kernels for Linear layers),
``bsr_rewrite`` (the Relax pass that swaps every Linear for one of those kernels,
with its report), ``schedules`` (schedule rules for the rest of the graph),
``compile`` (pipeline, artifact cache, loading) and ``benchmark`` (PyTorch vs TVM
on the same cores). TVM is imported lazily: importing ``core`` stays cheap.
"""
