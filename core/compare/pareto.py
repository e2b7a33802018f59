"""Comparing runs: which ones are worth having (the Pareto front of size, latency and accuracy).

A run is on the front when no other run is at least as small, at least as fast and at least
as accurate while strictly better in one of them. Runs missing any of the three numbers
cannot be placed and are left off the front.
"""

from __future__ import annotations

import numpy as np

OBJECTIVES = ("size_bytes", "latency_ms", "accuracy")  # minimise, minimise, maximise


def pareto_front(rows: list[dict]) -> list[bool]:
    """For each row, whether it is on the front.

    Sorted lexicographically by (size, latency, -accuracy), every run's dominators come before it,
    and a dominated run is always dominated by some run on the front; so one pass that checks each
    run against the front found so far is exact, and costs runs x front size, not runs squared.
    """
    on_front = np.zeros(len(rows), dtype=bool)
    index = [i for i, row in enumerate(rows) if all(row.get(k) is not None for k in OBJECTIVES)]
    if not index:
        return on_front.tolist()
    costs = np.array([[rows[i]["size_bytes"], rows[i]["latency_ms"], -rows[i]["accuracy"]] for i in index], float)
    order = np.lexsort((costs[:, 2], costs[:, 1], costs[:, 0]))
    front = np.empty((0, 3))
    for position in order:
        cost = costs[position]
        if not ((front <= cost).all(axis=1) & (front < cost).any(axis=1)).any():
            front = np.vstack([front, cost])
            on_front[index[position]] = True
    return on_front.tolist()
