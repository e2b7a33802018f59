"""The model library: every model the dashboard knows, by a readable name, with where it came from.

Bundled and config-built models are always there. Uploaded, pruned, recovered and quantized
models join it as they are made: each gets a copy of its folder (or file) under the
library's own directory, so evicting the artifact cache never breaks it, and a readable name
(``minilm magnitude 0.9 · 12-01 16:52``) that every picker, command and run uses: a run made
on a library model records that name, so Compare lists runs under it. Removing a model
deletes its files and marks the entry removed; runs that name it stay as they were.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
import uuid
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path

from core.errors import SparseLabError
from core.run_store import RunStore, sqlite_connect, sqlite_create
from core.settings import Settings

KINDS = ("bundled", "config", "uploaded", "pruned", "recovered", "quantized")
LOADABLE = ("bundled", "config", "uploaded", "pruned", "recovered")  # a model source; quantized is an .h5 file

_SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    parent TEXT,
    created REAL NOT NULL,
    size_bytes INTEGER,
    details TEXT NOT NULL,
    origin TEXT,
    removed REAL
);
CREATE INDEX IF NOT EXISTS models_origin ON models(origin);
"""


@dataclass(frozen=True)
class LibraryModel:
    name: str
    kind: str
    location: str  # a folder (or the .h5 of a quantized model); bundled/config: their source name
    parent: str | None = None
    created: float | None = None
    size_bytes: int | None = None
    details: dict = field(default_factory=dict)  # method, sparsity, fidelity, format...
    id: str | None = None

    @property
    def loadable(self) -> bool:
        return self.kind in LOADABLE

    def as_dict(self) -> dict:
        return asdict(self)


def _folder_bytes(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class ModelLibrary:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.db_path = self.root / "library.sqlite"
        self.models_dir = self.root / "models"
        sqlite_create(self.db_path, _SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        return sqlite_connect(self.db_path)

    # ------------------------------------------------------------------------------------------- reading
    def builtins(self) -> list[LibraryModel]:
        from core.model_source import BUNDLED, CONFIG_ARCHITECTURES

        return ([LibraryModel(name, "bundled", name) for name in BUNDLED]
                + [LibraryModel(name, "config", name) for name in CONFIG_ARCHITECTURES])

    def entries(self, loadable_only: bool = False) -> list[LibraryModel]:
        """Built-in models first, then the added ones, newest first."""
        with closing(self._connect()) as db:
            rows = db.execute("SELECT * FROM models WHERE removed IS NULL ORDER BY created DESC").fetchall()
        added = [self._model(row) for row in rows]
        return [m for m in self.builtins() + added if m.loadable or not loadable_only]

    def get(self, name: str) -> LibraryModel | None:
        """The live entry called ``name`` (or ``lib:<id>``), built-in or added."""
        name = name.strip()
        for model in self.builtins():
            if model.name == name:
                return model
        column, value = ("id", name[4:]) if name.startswith("lib:") else ("name", name)
        with closing(self._connect()) as db:
            row = db.execute(f"SELECT * FROM models WHERE {column} = ? AND removed IS NULL", (value,)).fetchone()
        return self._model(row) if row else None

    def by_origin(self, origin: str) -> LibraryModel | None:
        """The live entry made from ``origin`` (an artifact key, an upload digest): one entry per thing made."""
        with closing(self._connect()) as db:
            row = db.execute("SELECT * FROM models WHERE origin = ? AND removed IS NULL", (origin,)).fetchone()
        return self._model(row) if row else None

    def lineage(self, name: str) -> list[str]:
        """``name``, its parent, its parent's parent... up to a built-in model."""
        chain, seen = [], set()
        while name and name not in seen:
            chain.append(name)
            seen.add(name)
            model = self.get(name)
            name = model.parent if model else None
        return chain

    def _model(self, row: sqlite3.Row) -> LibraryModel:
        data = dict(row)
        return LibraryModel(name=data["name"], kind=data["kind"], location=str(self.models_dir / data["id"] / "model"
                                                                                  if data["kind"] != "quantized"
                                                                                  else self._file(data["id"])),
                            parent=data["parent"], created=data["created"], size_bytes=data["size_bytes"],
                            details=json.loads(data["details"]), id=data["id"])

    def _file(self, model_id: str) -> Path:
        files = sorted((self.models_dir / model_id / "model").glob("*"))
        return files[0] if files else self.models_dir / model_id / "model"

    # ------------------------------------------------------------------------------------------- writing
    def unique_name(self, base: str) -> str:
        name, number = base, 2
        while self.get(name) is not None or self._taken(name):
            name, number = f"{base} #{number}", number + 1
        return name

    def _taken(self, name: str) -> bool:
        with closing(self._connect()) as db:
            return db.execute("SELECT 1 FROM models WHERE name = ?", (name,)).fetchone() is not None

    def add(self, path: Path, *, kind: str, base_name: str, parent: str | None = None, details: dict | None = None,
            origin: str | None = None) -> LibraryModel:
        """Copy ``path`` (a model folder, or a file for quantized models) into the library under a fresh name.

        With ``origin``, adding the same thing twice returns the first entry instead of a copy."""
        if kind not in KINDS or kind in ("bundled", "config"):
            raise SparseLabError(f"Cannot add a model of kind '{kind}' to the library.")
        if origin and (existing := self.by_origin(origin)):
            return existing
        path = Path(path)
        if not path.exists():
            raise SparseLabError(f"Nothing to add to the library at '{path}'.")
        model_id = uuid.uuid4().hex[:12]
        staging = self.models_dir / f".{model_id}.partial"
        target = self.models_dir / model_id
        staging.mkdir(parents=True)
        try:
            if path.is_dir():
                shutil.copytree(path, staging / "model")
            else:
                (staging / "model").mkdir()
                shutil.copy2(path, staging / "model" / path.name)
            staging.rename(target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        name = self.unique_name(f"{base_name} · {time.strftime('%m-%d %H:%M')}")
        with closing(self._connect()) as db, db:
            db.execute("INSERT INTO models (id, name, kind, parent, created, size_bytes, details, origin) "
                       "VALUES (?,?,?,?,?,?,?,?)",
                       (model_id, name, kind, parent, time.time(), _folder_bytes(target / "model"),
                        json.dumps(details or {}, default=str), origin))
        return self.get(name)

    def remove(self, name: str) -> None:
        """Delete an added model's files; runs that name it keep their records."""
        model = self.get(name)
        if model is None:
            raise SparseLabError(f"No model called '{name}' in the library.")
        if model.id is None:
            raise SparseLabError(f"'{name}' is built in: it cannot be removed.")
        with closing(self._connect()) as db, db:
            db.execute("UPDATE models SET removed = ? WHERE id = ?", (time.time(), model.id))
        shutil.rmtree(self.models_dir / model.id, ignore_errors=True)

    # ------------------------------------------------------------------------------------------- what runs say
    def best_known(self, store: RunStore, names: list[str]) -> dict[str, dict]:
        """Per model name: its best measured fidelity (highest accuracy of a prune/recover/store run) and its
        fastest measured latency (TVM sparse or dense, peers), from the run store."""
        if not names:
            return {}
        best: dict[str, dict] = {name: {"fidelity": None, "latency_ms": None} for name in names}
        for row in store.summary_rows(models=names):
            entry = best[row["model"]]
            if row["accuracy"] is not None and row["kind"] in ("prune", "recover", "store"):
                entry["fidelity"] = max(entry["fidelity"] or 0.0, row["accuracy"])
            if row["latency_ms"] is not None and row["kind"] in ("tvm", "peer"):
                entry["latency_ms"] = min(entry["latency_ms"] or float("inf"), row["latency_ms"])
        return best


def default_library() -> ModelLibrary:
    return ModelLibrary(Settings.from_env().library_dir)
