"""Recovery by distillation: prune gradually (or start from one-shot masks) and train the pruned model to give
the dense model's sentence embeddings back, on CPU, within a time budget.

``schedule`` (the cubic sparsity schedule), ``request`` (what a recovery asks for, checked before any work),
``distill`` (the training loop, its masks and checkpoints) and ``jobs`` (``recover_job``: train, score, save,
add to the library). Never imports streamlit.
"""
