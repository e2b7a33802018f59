import random

from core.compare.pareto import pareto_front
from core.run_store import RunRecord, RunStore


def row(size, latency, accuracy):
    return {"size_bytes": size, "latency_ms": latency, "accuracy": accuracy}


def test_front_keeps_only_undominated_runs():
    rows = [row(10, 10, 0.9), row(5, 20, 0.9), row(20, 5, 0.95), row(10, 10, 0.8), row(30, 30, 0.5),
            row(None, 1, 1.0)]
    assert pareto_front(rows) == [True, True, True, False, False, False]


def test_equal_runs_are_both_on_the_front():
    assert pareto_front([row(1, 1, 1.0), row(1, 1, 1.0)]) == [True, True]


def test_front_matches_brute_force():
    rng = random.Random(3)
    rows = [row(rng.randint(1, 50), rng.randint(1, 50), rng.randint(0, 20) / 20) for _ in range(700)]

    def dominated(a):
        return any(b["size_bytes"] <= a["size_bytes"] and b["latency_ms"] <= a["latency_ms"]
                   and b["accuracy"] >= a["accuracy"] and b != a for b in rows)

    assert pareto_front(rows) == [not dominated(r) for r in rows]


def test_summary_rows_filter_without_json(tmp_path):
    store = RunStore(tmp_path / "r.sqlite")
    store.add(RunRecord(kind="tflite", model="digits-cnn", method="mn", sparsity=0.5, block="2:4", size_bytes=1))
    store.add(RunRecord(kind="prune", model="minilm", method="block", sparsity=0.9, block="16x1"))
    store.add(RunRecord(kind="prune", model="minilm", method="magnitude", sparsity=0.3))
    assert [r["method"] for r in store.summary_rows(models=["minilm"])] == ["magnitude", "block"]
    assert [r["method"] for r in store.summary_rows(sparsity=(0.4, 0.95))] == ["block", "mn"]
    assert [r["model"] for r in store.summary_rows(blocks=["2:4"], kinds=["tflite"])] == ["digits-cnn"]
