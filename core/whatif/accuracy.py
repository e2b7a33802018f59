"""How accurate past estimates were: the estimate-vs-measured pairs that ``check`` records in the run store.

Their root-mean-square relative error widens every later error bar, so the bars
reflect what the whole-model compiles actually showed, not only timing noise.
"""

from __future__ import annotations

import math
import statistics

from core.run_store import RunStore

CHECK_KIND = "whatif-check"


def past_accuracy(store: RunStore, model: str | None = None, threads: int | None = None) -> dict:
    """Summary and list of recorded checks (newest first), optionally for one model and thread count."""
    records = [r for r in store.query(kind=CHECK_KIND, model=model) if threads is None or r.threads == threads]
    pairs = [{"id": r.id, "created": r.created, "model": r.model, "sparsity": r.sparsity, "block": r.block,
              "threads": r.threads, **{k: r.metrics.get(k) for k in
                                       ("estimate_ms", "error_ms", "measured_ms", "rel_error", "within_error_bar",
                                        "unscaled_rel_error", "drift_factor", "precision")}}
             for r in records]
    errors = [abs(p["rel_error"]) for p in pairs]
    return {"count": len(pairs),
            "median_abs_rel_error": statistics.median(errors) if errors else None,
            "max_abs_rel_error": max(errors) if errors else None,
            "rms_rel_error": math.sqrt(statistics.fmean(e * e for e in errors)) if errors else None,
            "within_error_bar": statistics.fmean(bool(p["within_error_bar"]) for p in pairs) if pairs else None,
            "pairs": pairs}
