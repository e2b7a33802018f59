"""The What-if estimator: "if I pruned this model to s% with blocks b, how fast and how big would it be?"

Answered in seconds from measurements, not by compiling the whole model per point:
``kernel_timings`` (each Linear shape's BSR and dense kernel timed at a grid of
sparsities, cached per CPU and TVM version), ``rest_of_model`` (the measured time
of everything outside the Linear kernels, per schedule family, cached per model),
``sizes`` (fp32 / int8 / int8 + SparseLab sparse storage), ``estimate`` (the
request and the composed estimates with error bars), ``check`` (one point
compiled for real, the pair recorded in the run store) and ``jobs``.
"""
