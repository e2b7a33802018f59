"""Comparing runs: the Pareto front of size, latency and accuracy over the run store."""
