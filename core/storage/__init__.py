"""Saving quantized sparse models: the PruneBERT notebook's HDF5 layout and SparseLab's own."""
