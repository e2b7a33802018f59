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


def test_model_points_join_fidelity_latency_and_size_per_model(tmp_path, tiny_model):
    from core.compare.models import model_points
    from core.library.store import ModelLibrary
    from core.run_store import RunRecord, RunStore

    store, library = RunStore(tmp_path / "runs.sqlite"), ModelLibrary(tmp_path / "library")
    tiny_model.save_pretrained(tmp_path / "pruned")
    child = library.add(tmp_path / "pruned", kind="pruned", base_name="bert-tiny magnitude 0.9", parent="bert-tiny",
                        details={"mean_cosine": 0.61, "sparsity": 0.9})
    store.add(RunRecord(kind="tvm", model=child.name, method="tvm-bsr", latency_ms=3.0))
    store.add(RunRecord(kind="tvm", model=child.name, method="tvm-bsr-int8", latency_ms=2.0))
    store.add(RunRecord(kind="tvm", model=child.name, method="tvm-dense", latency_ms=9.0))  # not its sparse speed
    store.add(RunRecord(kind="store", model=child.name, size_bytes=700, metrics={"dense_size_bytes": 9000}))
    store.add(RunRecord(kind="peer", model="bert-tiny", method="onnxruntime-int8", latency_ms=4.0))
    store.add(RunRecord(kind="tvm", model="bert-tiny", method="pytorch-dense", latency_ms=8.0))
    points = {p["model"]: p for p in model_points(store, library)}
    assert points[child.name] == {"model": child.name, "kind": "pruned", "parent": "bert-tiny", "sparsity": 0.9,
                                        "accuracy": 0.61, "latency_ms": 2.0, "engine": "tvm-bsr-int8",
                                        "size_bytes": 700}
    assert points["bert-tiny"] == {"model": "bert-tiny", "kind": "dense", "parent": None, "sparsity": 0.0,
                                   "accuracy": 1.0, "latency_ms": 4.0, "engine": "onnxruntime-int8", "size_bytes": 9000}
