"""The model library: bundled, config-built, uploaded, pruned, recovered and quantized models by name."""
