"""The SQLite settings every SparseLab database shares: WAL so readers never block the writer
(a dashboard reads while jobs write), a generous busy timeout, rows by column name."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path


def connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=30)
    db.execute("PRAGMA journal_mode=WAL")
    db.row_factory = sqlite3.Row
    return db


def create(path: Path, schema: str) -> None:
    """Make the file (and its folder) with ``schema`` if they do not exist yet."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with closing(connect(path)) as db:
        db.executescript(schema)
