import csv
import io
import json

from core.run_store import RunRecord, RunStore, to_csv, to_json


def test_round_trip(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    record = RunRecord(kind="prune", model="minilm", method="magnitude", sparsity=0.9, block="16x1",
                       size_bytes=1234, accuracy=0.97, latency_ms=12.5, latency_std_ms=0.4, threads=2,
                       settings={"scope": "global"}, metrics={"mean_cosine": 0.99, "per_layer": [0.1, 0.2]})
    run_id = store.add(record)
    [back] = store.query(ids=[run_id])
    assert back == record
    assert back.environment["cpu"]["cores"] >= 1
    assert "torch" in back.environment["libraries"]


def test_query_filters_and_orders_newest_first(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    for i, (kind, model) in enumerate([("prune", "a"), ("tvm", "a"), ("prune", "b")]):
        store.add(RunRecord(kind=kind, model=model, created=1000.0 + i))
    assert [r.model for r in store.query(kind="prune")] == ["b", "a"]
    assert [r.kind for r in store.query(model="a")] == ["tvm", "prune"]
    assert len(store.query(limit=2)) == 2
    assert store.count() == 3
    assert store.distinct("kind") == ["prune", "tvm"]


def test_exports(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    store.add(RunRecord(kind="tvm", model="bert-base", latency_ms=70.0, metrics={"compile_s": 3.5}))
    records = store.query()
    rows = list(csv.DictReader(io.StringIO(to_csv(records))))
    assert rows[0]["model"] == "bert-base" and float(rows[0]["metric.compile_s"]) == 3.5
    assert json.loads(to_json(records))[0]["latency_ms"] == 70.0


def test_store_shared_between_handles(tmp_path):
    path = tmp_path / "shared.sqlite"
    RunStore(path).add(RunRecord(kind="x", model="m"))
    assert RunStore(path).count() == 1
