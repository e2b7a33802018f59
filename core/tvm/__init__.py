"""TVM 0.27 compilation of transformers with block-sparse (BSR) Linear layers.

One concept per module: ``target`` (host CPU target, runtime threads),
``relax_import`` (torch.export -> Relax), ``bsr_format`` (dense -> BSR arrays),
``bsr_kernel`` and ``dense_kernel`` (scheduled TIR kernels for Linear layers),
``bsr_rewrite`` (the Relax pass that swaps every Linear for one of those kernels,
with its report), ``fast_math`` (vectorisable GELU/softmax), ``schedules``
(schedule rules for the rest of the graph), ``tuning`` (measured BSR schedule
choice, cached), ``compile`` (pipeline, artifact cache, loading),
``kernel_sweep`` (one layer over blocks x sparsities) and ``benchmark`` (PyTorch
vs TVM on the same cores; the CLI command and job). TVM is imported lazily:
importing ``core`` stays cheap. Findings and numbers: docs/tvm.md.
"""
