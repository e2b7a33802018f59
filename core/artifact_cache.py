"""Content-addressed, crash-safe, process-safe store for heavy artifacts.

An artifact is a directory (a compiled library, a trained model, an exported
.tflite ...) addressed by a hash of everything that determines it: its inputs,
its settings, the versions of the libraries that build it and the CPU target.
It is built in a private temp directory and renamed into place in one atomic
step, so a crash mid-build leaves nothing that is later read as good. A per-key
file lock makes concurrent requests for the same key build it once. A size cap
evicts the least recently used artifacts.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from core.environment import cpu_info, library_versions, llvm_mcpu

META_FILE = "artifact.json"


def stable_hash(parts: dict) -> str:
    """A hash of JSON-serialisable parts that does not depend on dict order."""
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class ArtifactSpec:
    """What determines an artifact: kind, inputs and the libraries that build it."""

    kind: str
    inputs: dict
    libraries: tuple[str, ...] = ()
    cpu_specific: bool = False

    def key_parts(self) -> dict:
        parts = {"kind": self.kind, "inputs": self.inputs, "libraries": library_versions(self.libraries)}
        if self.cpu_specific:
            parts["cpu"] = {"model": cpu_info().model, "mcpu": llvm_mcpu()}
        return parts

    @property
    def key(self) -> str:
        return stable_hash(self.key_parts())


@dataclass(frozen=True)
class ArtifactEntry:
    kind: str
    key: str
    path: Path
    size_bytes: int
    created: float
    last_used: float
    description: str


def _fsync_path(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _fsync_tree(directory: Path) -> None:
    """Every file of a finished build on disk before it is published: a crash then cannot leave a
    complete-looking artifact with empty files, and the kernel's delayed write-back of a 100 MB
    library does not land in the middle of the timings that follow a build."""
    for path in sorted(directory.rglob("*"), reverse=True):
        _fsync_path(path)
    _fsync_path(directory)


def _dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


class ArtifactCache:
    def __init__(self, root: Path, cap_bytes: int):
        self.root = Path(root)
        self.cap_bytes = cap_bytes
        for sub in ("objects", "tmp", "locks"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / "objects" / key

    @contextmanager
    def _lock(self, key: str) -> Iterator[None]:
        with open(self.root / "locks" / f"{key}.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def lookup(self, spec: ArtifactSpec) -> Path | None:
        """The artifact's directory if it is complete, else None; marks it used."""
        path = self._path(spec.key)
        if not (path / META_FILE).is_file():
            return None
        os.utime(path / META_FILE)
        return path

    def get_or_build(
        self, spec: ArtifactSpec, build: Callable[[Path], None], description: str = ""
    ) -> tuple[Path, bool]:
        """Return (artifact directory, cache_hit). ``build(dir)`` writes the files into dir."""
        found = self.lookup(spec)
        if found:
            return found, True
        key = spec.key
        with self._lock(key):
            found = self.lookup(spec)  # another process built it while we waited
            if found:
                return found, True
            staging = self.root / "tmp" / f"{key}-{uuid.uuid4().hex}"
            staging.mkdir()
            try:
                build(staging)
                meta = {"kind": spec.kind, "key": key, "created": time.time(),
                        "description": description, "key_parts": spec.key_parts()}
                (staging / META_FILE).write_text(json.dumps(meta, indent=1, default=str))
                _fsync_tree(staging)
                os.rename(staging, self._path(key))
                _fsync_path(self._path(key).parent)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
        self.evict(keep=key)
        return self._path(key), False

    def entries(self) -> list[ArtifactEntry]:
        result = []
        for path in (self.root / "objects").iterdir():
            meta_path = path / META_FILE
            try:
                meta = json.loads(meta_path.read_text())
                last_used = meta_path.stat().st_mtime
            except (OSError, ValueError):
                continue
            result.append(ArtifactEntry(kind=meta["kind"], key=path.name, path=path,
                                        size_bytes=_dir_size(path), created=meta["created"],
                                        last_used=last_used, description=meta.get("description", "")))
        return sorted(result, key=lambda e: e.last_used, reverse=True)

    def total_bytes(self) -> int:
        return sum(e.size_bytes for e in self.entries())

    def remove(self, key: str) -> None:
        with self._lock(key):
            path = self._path(key)
            if path.exists():
                # Rename first so a concurrent lookup never sees a half-deleted artifact.
                doomed = self.root / "tmp" / f"{key}-deleted-{uuid.uuid4().hex}"
                os.rename(path, doomed)
                shutil.rmtree(doomed, ignore_errors=True)

    def evict(self, keep: str | None = None) -> list[str]:
        """Remove least recently used artifacts until the cache fits under its cap."""
        entries = self.entries()
        total = sum(e.size_bytes for e in entries)
        removed = []
        for entry in reversed(entries):  # oldest use first
            if total <= self.cap_bytes:
                break
            if entry.key == keep:
                continue
            self.remove(entry.key)
            total -= entry.size_bytes
            removed.append(entry.key)
        return removed

    def clear(self) -> int:
        entries = self.entries()
        for entry in entries:
            self.remove(entry.key)
        self._sweep_stale_tmp()
        return len(entries)

    def _sweep_stale_tmp(self, max_age_s: float = 24 * 3600) -> None:
        """Drop staging dirs left by crashed builds (never read: they were never renamed)."""
        now = time.time()
        for path in (self.root / "tmp").iterdir():
            if now - path.stat().st_mtime >= max_age_s:
                shutil.rmtree(path, ignore_errors=True)


def default_cache() -> ArtifactCache:
    from core.settings import Settings

    settings = Settings.from_env()
    return ArtifactCache(settings.cache_dir, settings.cache_cap_bytes)
