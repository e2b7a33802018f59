import multiprocessing
import os
import time
from pathlib import Path

import pytest

from core.artifact_cache import ArtifactCache, ArtifactSpec, stable_hash


def test_stable_hash_ignores_dict_order_but_not_values():
    assert stable_hash({"a": 1, "b": [1, 2]}) == stable_hash({"b": [1, 2], "a": 1})
    assert stable_hash({"a": 1}) != stable_hash({"a": 2})


def test_key_includes_library_versions_and_cpu():
    spec = ArtifactSpec("lib", {"x": 1}, libraries=("torch",), cpu_specific=True)
    parts = spec.key_parts()
    assert parts["libraries"]["torch"].startswith("2.13")
    assert parts["cpu"]["mcpu"]
    assert spec.key != ArtifactSpec("lib", {"x": 1}).key


def test_build_then_hit(tmp_path):
    cache = ArtifactCache(tmp_path, cap_bytes=10**9)
    spec = ArtifactSpec("model", {"seed": 1})
    calls = []

    def build(out: Path):
        calls.append(1)
        (out / "weights.bin").write_bytes(b"x" * 100)

    path, hit = cache.get_or_build(spec, build, description="a model")
    assert not hit and (path / "weights.bin").read_bytes() == b"x" * 100
    path2, hit2 = cache.get_or_build(spec, build)
    assert hit2 and path2 == path and len(calls) == 1
    [entry] = cache.entries()
    assert entry.kind == "model" and entry.description == "a model" and entry.size_bytes >= 100


def _slow_build_in_process(root: str, log: str) -> tuple[str, bool]:
    """One of two processes asking for the same artifact; ``log`` gets a line per event with its time."""
    cache = ArtifactCache(Path(root), cap_bytes=10**9)

    def note(event: str) -> None:
        with open(log, "a") as handle:
            handle.write(f"{os.getpid()} {event} {time.time()!r}\n")

    def build(out: Path):
        note("build-enter")
        deadline = time.time() + 60  # hold the build until the other process is asking too
        while Path(log).read_text().count(" call ") < 2 and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # it is now blocked on the key's lock (or about to be)
        (out / "data").write_text(str(os.getpid()))
        note("build-exit")

    note("call")
    path, hit = cache.get_or_build(ArtifactSpec("shared", {"k": 1}), build)
    note("return")
    return (path / "data").read_text(), hit


def test_two_processes_compute_once(tmp_path):
    log = tmp_path / "log.txt"
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        results = pool.starmap(_slow_build_in_process, [(str(tmp_path / "c"), str(log))] * 2)
    events = [line.split() for line in log.read_text().splitlines()]
    times = {(int(pid), event): float(at) for pid, event, at in events}
    [builder] = [pid for pid, event in times if event == "build-enter"]
    assert [event for _, event, _ in events].count("build-enter") == 1  # built once
    [waiter] = {pid for pid, _ in times} - {builder}
    # the other process asked while the build ran, and only returned once it was published
    assert times[waiter, "call"] < times[builder, "build-exit"] < times[waiter, "return"]
    assert times[builder, "build-enter"] < times[builder, "build-exit"]
    assert results[0][0] == results[1][0] == str(builder)
    assert sorted(hit for _, hit in results) == [False, True]


def test_interrupted_write_is_never_read_back(tmp_path):
    cache = ArtifactCache(tmp_path, cap_bytes=10**9)
    spec = ArtifactSpec("model", {"seed": 2})

    def crashing_build(out: Path):
        (out / "half.bin").write_bytes(b"partial")
        raise KeyboardInterrupt  # as if the process was stopped mid-write

    with pytest.raises(KeyboardInterrupt):
        cache.get_or_build(spec, crashing_build)
    assert cache.lookup(spec) is None
    assert cache.entries() == []
    assert list((tmp_path / "tmp").iterdir()) == []
    path, hit = cache.get_or_build(spec, lambda out: (out / "full.bin").write_bytes(b"ok"))
    assert not hit and (path / "full.bin").read_bytes() == b"ok"


def test_killed_writer_leaves_nothing_readable(tmp_path):
    """A process killed with SIGKILL mid-build cannot clean up; its staging dir is never read, and swept later."""
    marker = tmp_path / "inside-build.txt"
    root = tmp_path / "cache"
    code = (
        "import sys, time; from pathlib import Path; from core.artifact_cache import ArtifactCache, ArtifactSpec\n"
        f"c = ArtifactCache(Path({str(root)!r}), 10**9)\n"
        "def b(out):\n"
        "    (out / 'half').write_text('x')\n"
        f"    Path({str(marker)!r}).write_text(str(out))\n"
        "    time.sleep(60)\n"
        "c.get_or_build(ArtifactSpec('m', {'k': 3}), b)\n"
    )
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).parent.parent)
    try:
        deadline = time.time() + 60
        while not marker.exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert marker.exists(), f"the child never got inside build() (exit code {proc.poll()})"
        staging = Path(marker.read_text())
        assert staging.parent == root / "tmp" and (staging / "half").read_text() == "x"
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -9  # killed mid-build, not finished
    cache = ArtifactCache(root, cap_bytes=10**9)
    assert cache.lookup(ArtifactSpec("m", {"k": 3})) is None
    assert cache.entries() == []
    assert staging.is_dir()  # nobody cleaned up, but it is never read:
    path, hit = cache.get_or_build(ArtifactSpec("m", {"k": 3}), lambda out: (out / "full").write_text("ok"))
    assert not hit and sorted(p.name for p in path.iterdir()) == ["artifact.json", "full"]  # the lock was freed too
    old = time.time() - 2 * 24 * 3600
    os.utime(staging, (old, old))
    cache.clear()  # sweeps staging dirs a day old
    assert not staging.exists() and list((root / "tmp").iterdir()) == []


def test_lru_eviction_keeps_recent_and_new(tmp_path):
    cache = ArtifactCache(tmp_path, cap_bytes=2500)
    specs = [ArtifactSpec("blob", {"i": i}) for i in range(3)]
    for spec in specs[:2]:
        cache.get_or_build(spec, lambda out: (out / "b").write_bytes(b"0" * 1000))
        time.sleep(0.02)
    os.utime(cache.lookup(specs[0]) / "artifact.json")  # use the first again: the second is now oldest
    time.sleep(0.02)
    cache.get_or_build(specs[2], lambda out: (out / "b").write_bytes(b"0" * 1000))
    assert cache.lookup(specs[1]) is None
    assert cache.lookup(specs[0]) is not None and cache.lookup(specs[2]) is not None
    assert cache.total_bytes() <= 2500 + 3 * 600  # metadata files are small


def test_clear_removes_everything(tmp_path):
    cache = ArtifactCache(tmp_path, cap_bytes=10**9)
    for i in range(3):
        cache.get_or_build(ArtifactSpec("x", {"i": i}), lambda out: (out / "f").write_text("1"))
    assert cache.clear() == 3
    assert cache.entries() == []


def test_every_file_is_on_disk_before_the_artifact_is_published(tmp_path, monkeypatch):
    import core.artifact_cache as artifact_cache

    synced, published = set(), []
    real_fsync, real_rename = artifact_cache._fsync_path, os.rename
    monkeypatch.setattr(artifact_cache, "_fsync_path", lambda path: (synced.add(Path(path)), real_fsync(path)))

    def rename(source, target):
        published.append({p for p in Path(source).rglob("*") if p.is_file()} <= synced)
        real_rename(source, target)

    monkeypatch.setattr(artifact_cache.os, "rename", rename)

    def build(directory: Path) -> None:
        (directory / "sub").mkdir()
        (directory / "sub" / "model.so").write_bytes(b"x" * 1000)
        (directory / "report.json").write_text("{}")

    ArtifactCache(tmp_path, 10**9).get_or_build(ArtifactSpec("t", {"a": 1}), build)
    assert published == [True]
