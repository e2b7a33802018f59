"""Every measurement SparseLab makes, in one SQLite file a team can share.

The columns the Compare and Runs pages filter and plot on are real, indexed
columns so that tens of thousands of runs stay fast; everything else a run
measured or was configured with rides along as JSON.
"""

from __future__ import annotations

import csv
import io
import json
import socket
import sqlite3
import time
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path

from core.environment import environment_record

COLUMNS = ("kind", "model", "method", "sparsity", "block", "size_bytes", "accuracy",
           "latency_ms", "latency_std_ms", "threads", "machine")
# Ids of the runs this process added, when a job's process collects them to send back to the dashboard.
ADDED_RUN_IDS: list[int] | None = None

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    kind TEXT NOT NULL,
    model TEXT NOT NULL,
    method TEXT,
    sparsity REAL,
    block TEXT,
    size_bytes INTEGER,
    accuracy REAL,
    latency_ms REAL,
    latency_std_ms REAL,
    threads INTEGER,
    machine TEXT,
    settings TEXT NOT NULL,
    metrics TEXT NOT NULL,
    environment TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_kind ON runs(kind, created);
CREATE INDEX IF NOT EXISTS runs_model ON runs(model, created);
"""
_ADDED_COLUMNS = {"machine": "TEXT"}  # stores written before runs recorded their machine


# The SQLite settings every SparseLab database shares (the run store here, the job table in core.jobs):
# WAL so readers never block the writer (a dashboard reads while jobs write), a generous busy
# timeout, rows by column name.
def sqlite_connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=30)
    db.execute("PRAGMA journal_mode=WAL")
    db.row_factory = sqlite3.Row
    return db


def sqlite_create(path: Path, schema: str) -> None:
    """Make the file (and its folder) with ``schema`` if they do not exist yet."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite_connect(path)) as db:
        db.executescript(schema)


@dataclass
class RunRecord:
    """One measurement. ``accuracy`` is the run's headline fidelity/accuracy in [0, 1]."""

    kind: str
    model: str
    method: str | None = None
    sparsity: float | None = None
    block: str | None = None
    size_bytes: int | None = None
    accuracy: float | None = None
    latency_ms: float | None = None
    latency_std_ms: float | None = None
    threads: int | None = None
    machine: str | None = field(default_factory=socket.gethostname)  # the host it was measured on
    settings: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    environment: dict = field(default_factory=environment_record)
    created: float = field(default_factory=time.time)
    id: int | None = None

    def as_dict(self) -> dict:
        return asdict(self)


class RunStore:
    def __init__(self, path: Path):
        self.path = Path(path)
        sqlite_create(self.path, _SCHEMA)
        with closing(self._connect()) as db, db:
            have = {row["name"] for row in db.execute("PRAGMA table_info(runs)")}
            for column, sql_type in _ADDED_COLUMNS.items():
                if column not in have:
                    db.execute(f"ALTER TABLE runs ADD COLUMN {column} {sql_type}")

    def _connect(self) -> sqlite3.Connection:
        return sqlite_connect(self.path)

    def add(self, record: RunRecord) -> int:
        row = asdict(record)
        row.pop("id")
        for name in ("settings", "metrics", "environment"):
            row[name] = json.dumps(row[name], default=str)
        names = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        with closing(self._connect()) as db, db:
            cursor = db.execute(f"INSERT INTO runs ({names}) VALUES ({marks})", tuple(row.values()))
            record.id = cursor.lastrowid
        if ADDED_RUN_IDS is not None:
            ADDED_RUN_IDS.append(record.id)
        return record.id

    def get_many(self, ids: list[int]) -> list[RunRecord]:
        return self.query(ids=list(ids)) if ids else []

    def query(self, *, kind: str | None = None, model: str | None = None,
              method: str | None = None, machine: str | None = None, ids: list[int] | None = None,
              limit: int | None = None) -> list[RunRecord]:
        """Runs matching every given filter, newest first."""
        clauses, params = [], []
        for column, value in (("kind", kind), ("model", model), ("method", method), ("machine", machine)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if ids is not None:
            clauses.append(f"id IN ({', '.join('?' for _ in ids)})")
            params.extend(ids)
        sql = "SELECT * FROM runs"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY created DESC, id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        with closing(self._connect()) as db:
            return [_record(row) for row in db.execute(sql, params)]

    def summary_rows(self, *, kinds: list[str] | None = None, models: list[str] | None = None,
                     methods: list[str] | None = None, blocks: list[str] | None = None,
                     sparsity: tuple[float, float] | None = None, machines: list[str] | None = None) -> list[dict]:
        """The indexed columns of every matching run, newest first, without parsing any JSON:
        what a screen of ten thousand runs needs."""
        clauses, params = [], []
        for column, values in (("kind", kinds), ("model", models), ("method", methods), ("block", blocks),
                               ("machine", machines)):
            if values:
                clauses.append(f"{column} IN ({', '.join('?' for _ in values)})")
                params.extend(values)
        if sparsity is not None:
            clauses.append("sparsity BETWEEN ? AND ?")
            params.extend(sparsity)
        sql = f"SELECT id, created, {', '.join(COLUMNS)} FROM runs"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        with closing(self._connect()) as db:
            return [dict(row) for row in db.execute(sql + " ORDER BY created DESC, id DESC", params)]

    def count(self) -> int:
        with closing(self._connect()) as db:
            return db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]

    def distinct(self, column: str) -> list:
        if column not in COLUMNS:
            raise ValueError(f"not a run column: {column}")
        with closing(self._connect()) as db:
            return [r[0] for r in db.execute(
                f"SELECT DISTINCT {column} FROM runs WHERE {column} IS NOT NULL ORDER BY 1")]


def _record(row: sqlite3.Row) -> RunRecord:
    data = dict(row)
    for name in ("settings", "metrics", "environment"):
        data[name] = json.loads(data[name])
    return RunRecord(**data)


def flat_row(record: RunRecord) -> dict:
    """A run as one flat dict (metrics and settings prefixed), for tables and CSV."""
    row = {"id": record.id, "created": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))}
    row.update({name: getattr(record, name) for name in COLUMNS})
    row.update({f"metric.{k}": v for k, v in record.metrics.items() if not isinstance(v, (dict, list))})
    row.update({f"setting.{k}": v for k, v in record.settings.items() if not isinstance(v, (dict, list))})
    row["cpu"] = record.environment.get("cpu", {}).get("model")
    return row


def to_csv(records: list[RunRecord]) -> str:
    return rows_to_csv([flat_row(r) for r in records])


def rows_to_csv(rows: list[dict]) -> str:
    header = list(dict.fromkeys(k for row in rows for k in row))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=header)
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def to_json(records: list[RunRecord]) -> str:
    return json.dumps([asdict(r) for r in records], default=str)


def default_store() -> RunStore:
    from core.settings import Settings

    return RunStore(Settings.from_env().store_path)
