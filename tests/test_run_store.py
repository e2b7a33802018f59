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


def test_runs_record_their_machine_and_filter_by_it(tmp_path):
    import socket

    from core.run_store import RunRecord, RunStore

    store = RunStore(tmp_path / "runs.sqlite")
    here = store.add(RunRecord(kind="tvm", model="m", latency_ms=1.0))
    there = store.add(RunRecord(kind="tvm", model="m", latency_ms=2.0, machine="other-host"))
    assert [r.id for r in store.query(machine=socket.gethostname())] == [here]
    assert [r["id"] for r in store.summary_rows(machines=["other-host"])] == [there]
    assert store.distinct("machine") == sorted([socket.gethostname(), "other-host"])
    assert store.query(ids=[here])[0].environment["host"] == socket.gethostname()


def test_a_store_written_before_machines_were_recorded_gains_the_column(tmp_path):
    import sqlite3

    from core.run_store import RunRecord, RunStore

    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, created REAL NOT NULL, kind TEXT NOT "
                   "NULL, model TEXT NOT NULL, method TEXT, sparsity REAL, block TEXT, size_bytes INTEGER, accuracy "
                   "REAL, latency_ms REAL, latency_std_ms REAL, threads INTEGER, settings TEXT NOT NULL, metrics "
                   "TEXT NOT NULL, environment TEXT NOT NULL)")
        db.execute("INSERT INTO runs (created, kind, model, settings, metrics, environment) "
                   "VALUES (1.0, 'prune', 'old', '{}', '{}', '{}')")
    store = RunStore(path)
    [old] = store.query()
    assert old.model == "old" and old.machine is None
    store.add(RunRecord(kind="prune", model="new"))
    assert store.count() == 2
