"""One point per model: its fidelity, its fastest measured latency and its smallest stored size, joined.

A run measures one thing: a pruning measures fidelity (recorded under the model it pruned), a
compile measures latency, a store measures size. A Pareto front over runs therefore pairs
numbers no model has all of. Here each model of the library that was pruned or recovered
gets its fidelity against the dense model (recorded when it was made), its fastest sparse
latency (TVM runs of that model) and its smallest stored file (store runs); the dense model
it came from is a point too: fidelity 1, its fastest dense engine (PyTorch, ONNX Runtime,
OpenVINO, TVM dense), its fp32 size. Only models with all three are placed on the front.
"""

from __future__ import annotations

from core.library.store import ModelLibrary
from core.run_store import RunStore

SPARSE_METHODS = ("tvm-bsr", "tvm-bsr-int8")


def model_points(store: RunStore, library: ModelLibrary) -> list[dict]:
    rows = store.summary_rows()
    by_model: dict[str, list[dict]] = {}
    for row in rows:
        by_model.setdefault(row["model"], []).append(row)
    points, parents = [], {}
    for model in library.entries(loadable_only=True):
        if model.kind not in ("pruned", "recovered"):
            continue
        runs = by_model.get(model.name, [])
        fidelity = model.details.get("mean_cosine")
        latency = [r for r in runs if r["kind"] == "tvm" and r["method"] in SPARSE_METHODS and r["latency_ms"]]
        sizes = [r["size_bytes"] for r in runs if r["kind"] == "store" and r["size_bytes"]]
        fastest = min(latency, key=lambda r: r["latency_ms"]) if latency else None
        points.append({"model": model.name, "kind": model.kind, "parent": model.parent,
                       "sparsity": model.details.get("sparsity"), "accuracy": fidelity,
                       "latency_ms": fastest["latency_ms"] if fastest else None,
                       "engine": fastest["method"] if fastest else None,
                       "size_bytes": min(sizes) if sizes else None})
        if model.parent:
            parents.setdefault(model.parent, []).append(model.name)
    for parent, children in sorted(parents.items()):
        runs = by_model.get(parent, [])
        dense = [r for r in runs if r["latency_ms"] and (r["kind"] == "peer" or r["method"] in ("pytorch-dense",
                                                                                                 "tvm-dense"))]
        fastest = min(dense, key=lambda r: r["latency_ms"]) if dense else None
        points.append({"model": parent, "kind": "dense", "parent": None, "sparsity": 0.0, "accuracy": 1.0,
                       "latency_ms": fastest["latency_ms"] if fastest else None,
                       "engine": fastest["method"] if fastest else None,
                       "size_bytes": _dense_size(store, children)})
    return points


def _dense_size(store: RunStore, children: list[str]) -> int | None:
    """The fp32 size (torch.save of the same layers) that a store run of a pruned child recorded."""
    for child in children:
        for record in store.query(kind="store", model=child, limit=5):
            if record.metrics.get("dense_size_bytes"):
                return record.metrics["dense_size_bytes"]
    return None
