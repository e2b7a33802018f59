"""Seeded fuzzing of model files: every damaged file ends in a clean refusal or a clean load, in bounded memory.

HDF5: valid files of both layouts (bert-tiny, encoder pruned 90%) are mutated
by flipping bytes inside dataset payloads, truncating, and rewriting datasets
and attributes through h5py with random or extreme contents (raw byte flips
mostly hit gzip's checksum, so the rewrites are what reach the readers' checks).
Each case runs ``file_settings`` + ``read_into`` (what ``load_file`` does, with
the model built once) and must end in a SparseLabError or a loaded model.

Memory: the loads run in a worker process that does nothing else (which also
turns a crash inside HDF5 into a failure naming the case). In it, tracemalloc
traces every numpy array (where a size declared by the file would be
allocated): each load's traced peak must stay under 2x the model's own fp32
size. Torch allocations happen only after the checks, at the model's shapes;
they and HDF5's own buffers are covered by the worker's peak RSS, whose growth
after loading the valid files must stay under the same bound over all cases.

TFLite (slow: needs the trained tiny CNN): the files are mutated at the
flatbuffer fields that matter (shapes, types, buffer indices and lengths, op
inputs) and by random byte flips, and inspected in a child process, so that a
crash inside the TFLite runtime fails the test with the case that caused it.
"""

import json
import os
import random
import re
import resource
import subprocess
import sys
import tracemalloc
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest

from core.errors import SparseLabError
from core.model_source import resolve
from core.storage.quantization import prepare_for_storage
from core.storage.store import file_settings, read_into
from tests.test_storage_validation import RAW_EXCEPTIONS, _valid_bytes, pruned_bert_tiny

SEED = 20240601
BASES = [("prunebert", False, "none"), ("prunebert", True, "fp16"),
         ("sparselab", False, "fp32"), ("sparselab", True, "none")]
CASES_PER_BASE = 60
REPO = Path(__file__).resolve().parent.parent
EXTREMES = [0, 1, -1, 127, -128, 255, 256, 65535, 2 ** 31 - 1, -2 ** 31, 2 ** 40, 10 ** 6, 10 ** 12]


def model_bytes() -> int:
    model = pruned_bert_tiny()
    return sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])


# --- HDF5 mutations --------------------------------------------------------------------------------------------

def _datasets(h5) -> list[str]:
    names = []
    h5.visititems(lambda name, node: names.append(name) if isinstance(node, h5py.Dataset) else None)
    return sorted(names)


def _payload_extents(path) -> list[tuple[int, int]]:
    """(file offset, length) of every stored chunk or contiguous block of every dataset."""
    extents = []
    with h5py.File(path) as h5:
        for name in _datasets(h5):
            dsid = h5[name].id
            if h5[name].chunks is not None:
                for i in range(dsid.get_num_chunks()):
                    info = dsid.get_chunk_info(i)
                    extents.append((info.byte_offset, info.size))
            elif dsid.get_offset() is not None:
                extents.append((dsid.get_offset(), dsid.get_storage_size()))
    return [e for e in extents if e[1] > 0]


def _random_like(rng: np.random.Generator, array: np.ndarray) -> np.ndarray:
    if array.dtype.kind == "f":
        choice = rng.integers(4)
        if choice == 0:
            return np.full_like(array, rng.choice([np.nan, np.inf, -np.inf, 0.0, -1.0, 1e30]))
        return (rng.normal(size=array.shape) * 10.0 ** rng.integers(-3, 6)).astype(array.dtype)
    if array.dtype.kind in "iu":
        info = np.iinfo(array.dtype)
        if rng.random() < 0.5:
            out = array.copy()
            flat = out.reshape(-1)
            if flat.size:
                positions = rng.integers(0, flat.size, size=int(rng.integers(1, 4)))
                extreme = np.clip(rng.choice(EXTREMES), info.min, info.max)
                flat[positions] = extreme if rng.random() < 0.6 else rng.integers(info.min, info.max, dtype=np.int64,
                                                                                  endpoint=True)
            return out
        return rng.integers(info.min, info.max, size=array.shape, dtype=np.int64, endpoint=True).astype(array.dtype)
    return array[::-1].copy()  # strings (layer names): another order


def _rewrite_dataset(rng, path, name: str) -> str:
    with h5py.File(path) as h5:
        array = h5[name][()]
    kind = rng.choice(["values", "values", "values", "resize", "retype", "huge", "delete", "shuffle"])
    if kind == "values":
        new = _random_like(rng, np.asarray(array))
    elif kind == "resize":
        flat = np.asarray(array).reshape(-1)
        cut = int(rng.integers(0, flat.size + 1)) if flat.size else 0
        new = flat[:cut] if rng.random() < 0.5 else np.concatenate([flat, flat[: int(rng.integers(1, 50))]])
        if np.asarray(array).ndim == 2 and new.size % 2 == 0:
            new = new.reshape(-1, 2)
    elif kind == "retype":
        target = rng.choice(["float64", "int64", "int8", "uint16", "S4"])
        try:
            new = np.asarray(array).astype(target)
        except (ValueError, TypeError):
            new = np.zeros(np.asarray(array).shape, np.float64)
    elif kind == "shuffle":
        new = np.asarray(array).copy()
        rng.shuffle(new.reshape(-1) if new.ndim == 1 else new)
    with h5py.File(path, "r+") as h5:
        parent, leaf = (name.rsplit("/", 1) + [""])[:2] if "/" in name else ("/", name)
        del h5[name]
        if kind == "delete":
            return f"delete {name}"
        if kind == "huge":
            elements = int(rng.choice([2 ** 32, 10 ** 10, 2 ** 31 + 7]))
            h5[parent].create_dataset(leaf, shape=(elements,), dtype=np.asarray(array).dtype if array.dtype.kind in
                                      "iuf" else np.int8, chunks=(2 ** 16,), compression="gzip", fillvalue=1)
            return f"declare {elements:,} elements for {name}"
        h5[parent].create_dataset(leaf, data=new, dtype=h5py.string_dtype() if new.dtype.kind in "OU" else None)
    return f"{kind} {name}"


def _rewrite_attr(rng, path) -> str:
    with h5py.File(path, "r+") as h5:
        names = sorted(h5.attrs.keys())
        name = names[int(rng.integers(len(names)))]
        choice = rng.integers(8)
        value = [lambda: int(rng.choice(EXTREMES)), lambda: float(rng.choice([np.nan, np.inf, -1.0, 0.0, 1e300])),
                 lambda: np.array(rng.integers(-5, 10 ** 6, size=int(rng.integers(0, 6)))),
                 lambda: "garbage", lambda: json.dumps({"format": "sparselab", "task": "x"}),
                 lambda: json.dumps({"a": [1, {"version": "3"}]}), lambda: np.array([10 ** 6, 10 ** 6]),
                 lambda: None][choice]()
        if value is None:
            del h5.attrs[name]
            return f"delete attribute {name}"
        h5.attrs[name] = value
    return f"attribute {name} = {str(value)[:40]}"


def _flip_payload(rng, path) -> str:
    extents = _payload_extents(path)
    offset, length = extents[int(rng.integers(len(extents)))]
    with open(path, "r+b") as file:
        for _ in range(int(rng.integers(1, 9))):
            file.seek(offset + int(rng.integers(length)))
            file.write(bytes([int(rng.integers(256))]))
    return f"flip bytes in payload at {offset}+{length}"


def _truncate(rng, path) -> str:
    size = path.stat().st_size
    cut = int(rng.integers(0, size))
    os.truncate(path, cut)
    return f"truncate to {cut} of {size} bytes"


def mutate(rng: np.random.Generator, path: Path) -> str:
    roll = rng.random()
    if roll < 0.15:
        return _flip_payload(rng, path)
    if roll < 0.22:
        return _truncate(rng, path)
    if roll < 0.37:
        return _rewrite_attr(rng, path)
    with h5py.File(path) as h5:
        names = _datasets(h5)
    # index arrays, streams and shape tables are where damage hurts; weight them up
    weights = np.array([4.0 if re.search(r"indptr|indices|gaps|gap_bytes|nnz|shapes|scale_counts|bias_lengths|"
                                         r"names|axes|values|\.data$", n) else 1.0 for n in names])
    name = names[int(rng.choice(len(names), p=weights / weights.sum()))]
    description = _rewrite_dataset(rng, path, name)
    if rng.random() < 0.2:  # sometimes two things at once
        description += "; " + _rewrite_dataset(rng, path, names[int(rng.integers(len(names)))]) if name != \
            names[0] else ""
    return description


class Loader:
    """``load_file`` with the quantized model built once per (task, per_channel) and reused for every case.

    Reuse is sound here: what a case's outcome depends on (the model's shapes, dtypes, quantization
    schemes) never changes, and a clean load overwrites every stored parameter.
    """

    def __init__(self):
        self.fresh = {}

    def __call__(self, path: Path) -> None:
        fmt, config = file_settings(path)
        key = (config.task, config.per_channel)
        if key not in self.fresh:
            self.fresh[key] = prepare_for_storage(resolve("bert-tiny").load_model(config.task), config.per_channel,
                                                  "fp32")
        read_into(path, fmt, config, self.fresh[key])


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _hdf5_worker() -> None:
    """Run in a child process that only loads: one JSON line in (a path), one out (outcome, memory)."""
    load = Loader()
    tracemalloc.start()
    for line in sys.stdin:
        request = json.loads(line)
        current, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        try:
            load(Path(request["path"]))
            outcome, message = "loaded", ""
        except SparseLabError as exc:
            outcome, message = "refused", str(exc)
        except Exception as exc:  # noqa: BLE001  (the point: nothing else may escape)
            outcome, message = "raised", f"{type(exc).__name__}: {exc}"
        traced = tracemalloc.get_traced_memory()[1] - current
        print(json.dumps({"outcome": outcome, "message": message, "traced": traced, "rss": _peak_rss()}),
              flush=True)


class Worker:
    def __init__(self):
        code = f"import sys; sys.path.insert(0, {str(REPO)!r}); from tests.test_fuzz_files import _hdf5_worker; " \
               f"_hdf5_worker()"
        self.proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def load(self, path: Path, description: str) -> dict:
        self.proc.stdin.write(json.dumps({"path": str(path)}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(timeout=30)
            pytest.fail(f"the loading process died (code {self.proc.returncode}) on {description}\n"
                        f"{self.proc.stderr.read()[-2000:]}")
        return json.loads(line)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


@pytest.mark.slow  # 240 loads of mutated files (~80 s); test_storage_validation has the targeted cases
def test_fuzzed_hdf5_files_are_refused_or_loaded_in_bounded_memory(tmp_path):
    rng = np.random.default_rng(SEED)
    bound = 2 * model_bytes()
    bases = {base: _valid_bytes(*base) for base in BASES}
    worker = Worker()
    try:
        for base in BASES:  # warm up: every valid file loads; their peak is the baseline
            path = tmp_path / f"valid-{base[0]}-{base[1]}-{base[2]}.h5"
            path.write_bytes(bases[base])
            result = worker.load(path, f"valid {base}")
            assert result["outcome"] == "loaded", result
        rss_before = result["rss"]
        outcomes, traced, examples = Counter(), [], {}
        for i in range(CASES_PER_BASE * len(BASES)):
            base = BASES[i % len(BASES)]
            path = tmp_path / f"case{i}.h5"
            path.write_bytes(bases[base])
            description = f"case {i} ({base[0]}, per_channel={base[1]}, embeddings={base[2]}): " + mutate(rng, path)
            result = worker.load(path, description)
            message = result["message"]
            assert result["outcome"] != "raised", f"{description}: {message}"
            assert result["outcome"] == "loaded" or (message and not RAW_EXCEPTIONS.search(message)), \
                f"{description}: {message}"
            assert result["traced"] < bound, \
                f"{description}: {result['traced'] / 2 ** 20:.1f} MB traced (bound {bound / 2 ** 20:.1f} MB)"
            outcomes[result["outcome"]] += 1
            traced.append(result["traced"])
            if message:
                examples.setdefault(message[:50], f"{description} -> {message}")
            path.unlink()
        rss_growth = result["rss"] - rss_before
    finally:
        worker.close()
    print(f"\nHDF5 fuzz: {sum(outcomes.values())} cases, {outcomes['refused']} refused, {outcomes['loaded']} "
          f"loaded; traced peak per load max {max(traced) / 2 ** 20:.1f} MB, median "
          f"{np.median(traced) / 2 ** 20:.2f} MB; loader's peak RSS growth after warm-up {rss_growth / 2 ** 20:.1f} MB"
          f" over {rss_before / 2 ** 20:.0f} MB; bound {bound / 2 ** 20:.1f} MB (2x bert-tiny fp32); "
          f"{len(examples)} distinct refusal messages")
    assert rss_growth < bound
    assert outcomes["refused"] > len(BASES) * CASES_PER_BASE // 2  # the mutations do reach the checks


# --- TFLite (slow) ---------------------------------------------------------------------------------------------

def _tflite_slots(data: bytes) -> list[tuple[int, str, str]]:
    """(byte position, struct format, label) of the flatbuffer fields that damage would hurt most."""
    from core.tflite.inspection import _Flatbuffer

    fb = _Flatbuffer(data)
    model = fb.table(fb.read("<I", 0, "root"), "model")
    slots = []

    def field(table, index, fmt, label):
        pos = table._field(index)
        if pos is not None:
            slots.append((pos, fmt, label))

    def vector_items(table, index, size, fmt, label):
        start, length = table.vector(index, size, label)
        if length:
            slots.append((start - 4, "<I", f"{label} length"))
            for i in range(length):
                slots.append((start + size * i, fmt, f"{label}[{i}]"))

    for b, buffer in enumerate(model.tables(4, "buffers")):
        start, length = buffer.vector(0, 1, "data")
        if length:
            slots.append((start - 4, "<I", f"buffer {b} length"))
    for o, code in enumerate(model.tables(1, "operator_codes")):
        field(code, 3, "<i", f"op code {o}")
    for subgraph in model.tables(2, "subgraphs"):
        for t, tensor in enumerate(subgraph.tables(0, "tensors")):
            vector_items(tensor, 0, 4, "<i", f"tensor {t} shape")
            field(tensor, 1, "<b", f"tensor {t} type")
            field(tensor, 2, "<I", f"tensor {t} buffer")
            sparsity = tensor.table(6, "sparsity")
            if sparsity is not None:
                vector_items(sparsity, 0, 4, "<i", f"tensor {t} traversal_order")
                for level_index, level in enumerate(sparsity.tables(2, "dim_metadata")):
                    label = f"tensor {t} level {level_index}"
                    field(level, 0, "<b", f"{label} format")
                    field(level, 1, "<i", f"{label} dense_size")
                    for union, name in ((3, "segments"), (5, "indices")):
                        member = level.table(union, name)
                        if member is not None:
                            kind = level.scalar(union - 1, "<B", 0, "type")
                            size, fmt = {1: (4, "<i"), 2: (2, "<H"), 3: (1, "<B")}.get(kind, (4, "<i"))
                            start, length = member.vector(0, size, name)
                            slots.append((start - 4, "<I", f"{label} {name} length"))
                            for i in sorted({0, length - 1, *(int(length * f) for f in (0.25, 0.5, 0.75))}):
                                if 0 <= i < length:
                                    slots.append((start + size * i, fmt, f"{label} {name}[{i}]"))
        for o, op in enumerate(subgraph.tables(3, "operators")):
            field(op, 0, "<I", f"operator {o} opcode_index")
            vector_items(op, 1, 4, "<i", f"operator {o} inputs")
            vector_items(op, 2, 4, "<i", f"operator {o} outputs")
    return slots


def tflite_mutation(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    import struct

    data = bytearray(data)
    roll = rng.random()
    if roll < 0.2:
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data), "random byte flips"
    if roll < 0.27:
        cut = rng.randrange(len(data))
        return bytes(data[:cut]), f"truncate to {cut}"
    pos, fmt, label = rng.choice(_tflite_slots(bytes(data)))
    width = struct.calcsize(fmt)
    low, high = {1: (-128, 127), 2: (-2 ** 15, 2 ** 15 - 1), 4: (-2 ** 31, 2 ** 31 - 1)}[width]
    if fmt.endswith(("I", "B", "H")):
        low, high = 0, 2 ** (8 * width) - 1
    value = rng.choice([rng.randint(low, high), rng.choice([0, 1, 2, 3, high, low, -1 if low < 0 else high,
                                                             10 ** 6 if high > 10 ** 6 else high])])
    value = min(max(value, low), high)
    struct.pack_into(fmt, data, pos, value)
    return bytes(data), f"{label} = {value}"


def _tflite_worker(folder: str, cases: int, seed: int) -> None:
    """Run in a child process: one JSON line per case started and per outcome, then the memory figures."""
    import core  # noqa: F401
    from core.tflite.inspection import inspect_tflite

    rng = random.Random(seed)
    files = {p.stem: p.read_bytes() for p in sorted(Path(folder).glob("*.tflite"))}
    for data in files.values():
        inspect_tflite(data, (2, 4))  # warm up: valid files inspect, and set the RSS baseline
    baseline = _peak_rss()
    for i in range(cases):
        name = rng.choice(sorted(files))
        data, description = tflite_mutation(rng, files[name])
        print(json.dumps({"case": i, "start": f"{name}: {description}"}), flush=True)
        try:
            inspect_tflite(data, (2, 4))
            outcome, message = "inspected", ""
        except SparseLabError as exc:
            outcome, message = "refused", str(exc)
        except Exception as exc:  # noqa: BLE001
            outcome, message = "raised", f"{type(exc).__name__}: {exc}"
        print(json.dumps({"case": i, "outcome": outcome, "message": message[:300], "rss": _peak_rss()}), flush=True)
    print(json.dumps({"baseline_rss": baseline, "peak_rss": _peak_rss()}), flush=True)


TFLITE_CASES = 240


@pytest.mark.slow
def test_fuzzed_tflite_files_are_refused_or_inspected(tmp_path):
    from tests.fixtures_keras import _tiny_run

    for variant, data in _tiny_run().files.items():
        (tmp_path / f"{variant}.tflite").write_bytes(data)
    code = (f"import sys; sys.path.insert(0, {str(REPO)!r}); from tests.test_fuzz_files import _tflite_worker; "
            f"_tflite_worker({str(tmp_path)!r}, {TFLITE_CASES}, {SEED})")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=600)
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    started = [line["start"] for line in lines if "start" in line]
    assert proc.returncode == 0, (f"the child died (code {proc.returncode}) during case {len(started) - 1}: "
                                  f"{started[-1] if started else '-'}\n{proc.stderr[-2000:]}")
    results = [line for line in lines if "outcome" in line]
    raised = [f"{started[r['case']]}: {r['message']}" for r in results if r["outcome"] == "raised"]
    assert not raised, "\n".join(raised[:10])
    leaked = [r["message"] for r in results if r["outcome"] == "refused" and RAW_EXCEPTIONS.search(r["message"])]
    assert not leaked, leaked[:5]
    memory = lines[-1]
    growth = memory["peak_rss"] - memory["baseline_rss"]
    rss = [memory["baseline_rss"]] + [r["rss"] for r in results]
    jump, case = max((after - before, i) for i, (before, after) in enumerate(zip(rss, rss[1:])))
    counts = Counter(r["outcome"] for r in results)
    print(f"\nTFLite fuzz: {len(results)} cases, {counts['refused']} refused, {counts['inspected']} inspected; "
          f"child peak RSS growth {growth / 2 ** 20:.1f} MB over a {memory['baseline_rss'] / 2 ** 20:.0f} MB baseline")
    assert len(results) == TFLITE_CASES
    from core.tflite.inspection import ACTIVATION_LIMIT

    assert growth < ACTIVATION_LIMIT, f"peak RSS grew {jump / 2 ** 20:.0f} MB on {started[case]}"


# --- what the TFLite fuzz found, kept as targeted cases (each crashed or ballooned the runtime before) ------------

def _set_slot(data: bytes, label: str, value: int) -> bytes:
    import struct

    pos, fmt, _ = next(slot for slot in _tflite_slots(data) if slot[2] == label)
    data = bytearray(data)
    struct.pack_into(fmt, data, pos, value)
    return bytes(data)


@pytest.mark.slow
@pytest.mark.parametrize("variant, label, value, words", [
    # DENSIFY wrote past its buffer (heap corruption): the sparse conv2 weight's shape no longer fits its metadata
    ("sparse", "tensor 7 shape[3]", 1, "sparse index outside dimension 3's 1 positions"),
    # an op output of -1 (only inputs may be left out): segmentation fault in the runtime
    ("sparse", "operator 7 outputs[0]", -1, "operator 7's outputs name a tensor outside"),
    # a 1x1000000x8x1 input grew every activation after it: 1.6 GB resident
    ("int8", "tensor 0 shape[1]", 10 ** 6, "is declared [1, 8, 8, 32] but its inputs make it [1, 1000000, 8, 32]"),
    # a buffer longer than the file: the interpreter's flatbuffer verifier refuses it before our walk runs
    ("float", "buffer 3 length", 2 ** 30, "The TFLite interpreter rejects this file"),
])
def test_damaged_tflite_found_by_fuzzing_is_refused(variant, label, value, words):
    from core.tflite.inspection import inspect_tflite
    from tests.fixtures_keras import _tiny_run

    data = _set_slot(_tiny_run().files[variant], label, value)
    with pytest.raises(SparseLabError) as caught:
        inspect_tflite(data, (2, 4))
    assert words in str(caught.value)
