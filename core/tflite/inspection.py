"""Reading the weights of any .tflite file: shapes, sparsity, m:n pattern and heatmap windows.

Weights are read through the interpreter with every tensor preserved and no
delegate: with EXPERIMENTAL_SPARSITY a weight is stored compressed and a DENSIFY
op rebuilds it at run time, and with XNNPACK on, the densified tensors read back
as garbage. Quantized weights are dequantized (their zero point is 0, so zeros
stay zeros). ``ai_edge_litert`` is the interpreter; it has its own
``OpResolverType`` enum.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from core.errors import SparseLabError
from core.pruning.stats import Heatmap
from core.tflite.m_by_n import MnCheck, check_m_by_n

TFLITE_IDENTIFIER = b"TFL3"
# Ops whose input 1 is a weight (TRANSPOSE_CONV's input 0 is the output shape).
WEIGHT_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")
# Ops that sit between a stored weight and the op using it.
PASS_THROUGH_OPS = ("DENSIFY", "DEQUANTIZE")
# Bytes per element of each TensorType in TFLite's schema (STRING, RESOURCE, VARIANT: no fixed size).
# Newer types (19+: sub-byte and 8-bit floats) count as one byte for the memory bound only.
TENSOR_TYPE_BYTES = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 5: 0, 6: 1, 7: 2, 8: 8, 9: 1, 10: 8, 11: 16, 12: 8, 13: 0,
                     14: 0, 15: 4, 16: 2, 17: 0.5, 18: 2, 19: 1, 20: 1, 21: 1, 22: 1}
FIXED_SIZE_TYPES = (0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 15, 16, 18)
MAX_RANK = 8
# All of a model's declared tensors together may take at most this much memory (or 16x the file, if more):
# inspection keeps every tensor, and a damaged shape must not become a multi-GB allocation.
ACTIVATION_LIMIT = 64 * 2 ** 20
ACTIVATION_FILE_FACTOR = 16


@dataclass(frozen=True)
class WeightTensor:
    """One weight as the op using it sees it (densified, dequantized); ``name`` is the stored tensor's."""

    name: str
    op: str
    shape: tuple[int, ...]
    stored_dtype: str
    stored_sparse: bool
    zeros: int
    mn: MnCheck | None
    values: np.ndarray = field(repr=False, compare=False)

    @property
    def sparsity(self) -> float:
        return self.zeros / max(1, self.values.size)

    @property
    def matrix(self) -> np.ndarray:
        """The weight as rows x last dimension (input channels), the layout m:n groups run along."""
        return self.values.reshape(-1, self.shape[-1])

    def as_dict(self) -> dict:
        return {"name": self.name, "op": self.op, "shape": list(self.shape), "stored_dtype": self.stored_dtype,
                "stored_sparse": self.stored_sparse, "zeros": self.zeros, "sparsity": self.sparsity,
                "mn": self.mn.as_dict() if self.mn else None}


@dataclass(frozen=True)
class TfliteInspection:
    size_bytes: int
    tensors: tuple[WeightTensor, ...]
    mn: tuple[int, int] | None

    def mn_holding(self) -> list[str]:
        """Names of the weights that keep the m:n pattern (an unpruned classifier rightly does not)."""
        return [t.name for t in self.tensors if t.mn and t.mn.holds]

    def tensor(self, name: str) -> WeightTensor:
        found = next((t for t in self.tensors if t.name == name), None)
        if found is None:
            raise SparseLabError(f"The .tflite file has no weight tensor '{name}'; it has "
                                 f"{', '.join(t.name for t in self.tensors[:5]) or 'none'}"
                                 f"{'...' if len(self.tensors) > 5 else ''}.")
        return found

    def as_dict(self) -> dict:
        return {"size_bytes": self.size_bytes, "mn": f"{self.mn[0]}:{self.mn[1]}" if self.mn else None,
                "mn_holding": self.mn_holding(), "tensors": [t.as_dict() for t in self.tensors]}


def check_identifier(data: bytes) -> None:
    """A TFLite flatbuffer carries the file identifier 'TFL3' at bytes 4..8."""
    if len(data) < 8 or data[4:8] != TFLITE_IDENTIFIER:
        found = f"{bytes(data[4:8])!r} there" if len(data) >= 8 else f"only {len(data)} bytes"
        raise SparseLabError(f"This is not a TFLite model: a .tflite file carries the identifier 'TFL3' at "
                             f"bytes 4-8, and this one has {found}.")


class _Damaged(Exception):  # noqa: N818 (internal; always becomes a SparseLabError)
    """A structural problem found while walking the flatbuffer; becomes a SparseLabError."""


class _Flatbuffer:
    """Bounds-checked reads of a flatbuffer: every offset and vector length is checked against the file length."""

    def __init__(self, data: bytes):
        self.data, self.size = bytes(data), len(data)

    def read(self, fmt: str, pos: int, what: str):
        width = struct.calcsize(fmt)
        if pos < 0 or pos + width > self.size:
            raise _Damaged(f"{what} points to byte {pos}, outside the file's {self.size} bytes")
        return struct.unpack_from(fmt, self.data, pos)[0]

    def table(self, pos: int, what: str) -> _Table:
        vtable = pos - self.read("<i", pos, what)
        vtable_size = self.read("<H", vtable, f"{what}'s field table")
        if vtable_size < 4 or vtable + vtable_size > self.size:
            raise _Damaged(f"{what}'s field table runs past the end of the file")
        return _Table(self, pos, vtable, vtable_size, what)


class _Table:
    def __init__(self, fb: _Flatbuffer, pos: int, vtable: int, vtable_size: int, what: str):
        self.fb, self.pos, self.vtable, self.vtable_size, self.what = fb, pos, vtable, vtable_size, what

    def _field(self, index: int) -> int | None:
        entry = 4 + 2 * index
        if entry + 2 > self.vtable_size:
            return None
        offset = self.fb.read("<H", self.vtable + entry, self.what)
        return self.pos + offset if offset else None

    def scalar(self, index: int, fmt: str, default, name: str):
        pos = self._field(index)
        return default if pos is None else self.fb.read(fmt, pos, f"{self.what}.{name}")

    def _target(self, index: int, name: str) -> int | None:
        pos = self._field(index)
        return None if pos is None else pos + self.fb.read("<I", pos, f"{self.what}.{name}")

    def vector(self, index: int, element_size: int, name: str) -> tuple[int, int]:
        """(start, length) of a vector field, its whole extent inside the file; (0, 0) when absent."""
        target = self._target(index, name)
        if target is None:
            return 0, 0
        length = self.fb.read("<I", target, f"{self.what}.{name}")
        if target + 4 + length * element_size > self.fb.size:
            raise _Damaged(f"{self.what}.{name} claims {length:,} entries, which run past the end of the file")
        return target + 4, length

    def ints(self, index: int, name: str) -> list[int]:
        start, length = self.vector(index, 4, name)
        return list(struct.unpack_from(f"<{length}i", self.fb.data, start)) if length else []

    def tables(self, index: int, name: str) -> list[_Table]:
        start, length = self.vector(index, 4, name)
        return [self.fb.table(start + 4 * i + self.fb.read("<I", start + 4 * i, f"{self.what}.{name}"),
                              f"{name}[{i}]") for i in range(length)]

    def has(self, index: int) -> bool:
        return self._field(index) is not None

    def table(self, index: int, name: str) -> _Table | None:
        target = self._target(index, name)
        return None if target is None else self.fb.table(target, f"{self.what}.{name}")

    def numbers(self, index: int, dtype: str, name: str) -> np.ndarray:
        """A vector of scalars as a numpy array (empty when absent)."""
        dtype = np.dtype(dtype)
        start, length = self.vector(index, dtype.itemsize, name)
        return np.frombuffer(self.fb.data, dtype, length, start) if length else np.zeros(0, dtype)


# SparseIndexVector union members (Int32Vector, Uint16Vector, Uint8Vector): their one field is the values.
SPARSE_INDEX_DTYPES = {1: "<i4", 2: "<u2", 3: "u1"}
DENSE, SPARSE_CSR = 0, 1


def _check_sparsity(tensor: _Table, shape: list[int], stored: int, element_bytes: int, where: str) -> None:
    """A sparse constant's metadata must describe its declared shape and exactly the values its buffer holds;
    DENSIFY trusts both and writes out of bounds when they disagree."""
    sparsity = tensor.table(6, "sparsity")
    order = [int(n) for n in sparsity.numbers(0, "<i4", "traversal_order")]
    block_map = [int(n) for n in sparsity.numbers(1, "<i4", "block_map")]
    levels = sparsity.tables(2, "dim_metadata")
    rank = len(shape)
    if sorted(order) != list(range(len(order))) or len(levels) != len(order) or len(order) != rank + len(
            block_map) or any(not 0 <= b < rank for b in block_map):
        raise _Damaged(f"{where}'s sparsity metadata (traversal order {order[:10]}, block map {block_map[:10]}, "
                       f"{len(levels)} levels) does not fit its {rank} dimensions")
    sizes = list(shape) + [0] * len(block_map)
    for j, dim in enumerate(block_map):
        block = levels[order.index(rank + j)].scalar(1, "<i", 0, "dense_size")
        if block <= 0 or shape[dim] % block:
            raise _Damaged(f"{where} has blocks of {block} along dimension {dim} of size {shape[dim]}")
        sizes[rank + j], sizes[dim] = block, shape[dim] // block
    count = 1
    for level, dim in zip(levels, order):
        size, kind = sizes[dim], level.scalar(0, "<b", DENSE, "format")
        if kind == DENSE:
            if level.scalar(1, "<i", 0, "dense_size") != size:
                raise _Damaged(f"{where}'s sparsity metadata gives dimension {dim} size "
                               f"{level.scalar(1, '<i', 0, 'dense_size')}, but the tensor's shape gives {size}")
            count *= size
        elif kind == SPARSE_CSR:
            segments, indices = (_sparse_index_vector(level, field, f"{where} {name}")
                                 for field, name in ((2, "array_segments"), (4, "array_indices")))
            if segments.size != count + 1 or segments[0] != 0 or np.any(np.diff(segments) < 0) or \
                    segments[-1] != indices.size:
                raise _Damaged(f"{where}'s sparse row pointers along dimension {dim} are inconsistent "
                               f"({segments.size} for {count} rows, ending at {segments[-1] if segments.size else '-'} "
                               f"for {indices.size} indices)")
            if indices.size and (indices.min() < 0 or indices.max() >= size):
                raise _Damaged(f"{where} has a sparse index outside dimension {dim}'s {size} positions")
            count = int(indices.size)
        else:
            raise _Damaged(f"{where}'s sparsity metadata has level format {kind}, which TFLite does not define")
    if count * element_bytes != stored:
        raise _Damaged(f"{where}'s sparsity metadata describes {count:,} stored values, but its buffer holds "
                       f"{stored:,} bytes")


def _sparse_index_vector(level: _Table, type_field: int, what: str) -> np.ndarray:
    kind = level.scalar(type_field, "<B", 0, "type")
    if kind not in SPARSE_INDEX_DTYPES:
        raise _Damaged(f"{what} has index vector type {kind}, which TFLite does not define")
    table = level.table(type_field + 1, "vector")
    if table is None:
        raise _Damaged(f"{what} is missing")
    return table.numbers(0, SPARSE_INDEX_DTYPES[kind], "values").astype(np.int64)


def check_structure(data: bytes) -> list[tuple[int, ...]]:
    """Walk the model's tables before the interpreter allocates or runs anything: buffers inside the file,
    constant tensors the size of their buffers (sparse ones: metadata that fits shape and buffer), every
    tensor/buffer/op-code index in range, and the memory the declared tensors would take bounded (``ACTIVATION_LIMIT``).
    Raises SparseLabError saying what is wrong."""
    try:
        return _check_structure(_Flatbuffer(data))
    except _Damaged as exc:
        raise SparseLabError(f"This .tflite file is damaged: {exc}. It was refused before any of its tensors "
                             f"was allocated or run; export the model again.") from exc


def _check_structure(fb: _Flatbuffer) -> list[tuple[int, ...]]:
    """The declared shapes of the main subgraph's tensors, once everything checks out."""
    model = fb.table(fb.read("<I", 0, "the root offset"), "model")
    buffers = model.tables(4, "buffers")
    buffer_sizes = []
    for i, buffer in enumerate(buffers):
        _, length = buffer.vector(0, 1, "data")
        offset, size = buffer.scalar(1, "<Q", 0, "offset"), buffer.scalar(2, "<Q", 0, "size")
        if offset > 1 and offset + size > fb.size:
            raise _Damaged(f"buffer {i} claims {size:,} bytes at byte {offset:,}, past the end of the file "
                           f"({fb.size:,} bytes)")
        buffer_sizes.append(length or (size if offset > 1 else 0))
    op_codes = len(model.tables(1, "operator_codes"))
    subgraphs = model.tables(2, "subgraphs")
    if not subgraphs:
        raise _Damaged("the model has no subgraph")
    limit = max(ACTIVATION_LIMIT, ACTIVATION_FILE_FACTOR * fb.size)
    declared, shapes = 0, []
    for g, subgraph in enumerate(subgraphs):
        tensors = subgraph.tables(0, "tensors")
        for t, tensor in enumerate(tensors):
            shape = tensor.ints(0, "shape")
            if g == 0:
                shapes.append(tuple(shape))
            kind = tensor.scalar(1, "<b", 0, "type")
            buffer = tensor.scalar(2, "<I", 0, "buffer")
            where = f"subgraph {g} tensor {t}"
            if len(shape) > MAX_RANK or any(d < 0 for d in shape):
                raise _Damaged(f"{where} declares shape {shape[:MAX_RANK + 1]}; dimensions must be non-negative "
                               f"and at most {MAX_RANK}")
            if kind not in TENSOR_TYPE_BYTES:
                raise _Damaged(f"{where} has tensor type {kind}, which TFLite does not define")
            if buffer >= len(buffers):
                raise _Damaged(f"{where} uses buffer {buffer}, but the file has {len(buffers)} buffers")
            elements = math.prod(shape)
            nbytes = math.ceil(elements * TENSOR_TYPE_BYTES[kind])
            stored = buffer_sizes[buffer] if buffer else 0
            if tensor.has(6):
                if kind not in FIXED_SIZE_TYPES:
                    raise _Damaged(f"{where} is sparse with tensor type {kind}, which has no fixed element size")
                _check_sparsity(tensor, shape, stored, TENSOR_TYPE_BYTES[kind], where)
            elif stored and kind in FIXED_SIZE_TYPES and stored != nbytes:
                raise _Damaged(f"{where} is {'x'.join(map(str, shape)) or 'a scalar'} ({nbytes:,} bytes) but its "
                               f"buffer {buffer} holds {stored:,} bytes")
            declared += nbytes
            if declared > limit:
                raise _Damaged(f"its tensors declare more than {limit:,} bytes (at {where}, shape {shape}), far more "
                               f"than a model of {fb.size:,} bytes needs")
        count = len(tensors)
        for name, index in (("inputs", 1), ("outputs", 2)):
            if any(not 0 <= i < count for i in subgraph.ints(index, name)):
                raise _Damaged(f"subgraph {g}'s {name} name a tensor outside its {count} tensors")
        for o, op in enumerate(subgraph.tables(3, "operators")):
            if op.scalar(0, "<I", 0, "opcode_index") >= op_codes:
                raise _Damaged(f"subgraph {g} operator {o} uses op code {op.scalar(0, '<I', 0, 'opcode_index')}, "
                               f"but the file defines {op_codes}")
            for name, index, lowest in (("inputs", 1, -1), ("outputs", 2, 0)):  # -1: an optional input left out
                if any(not lowest <= i < count for i in op.ints(index, name)):
                    raise _Damaged(f"subgraph {g} operator {o}'s {name} name a tensor outside its {count} tensors")
    return shapes


def check_resolved_shapes(interpreter: Interpreter, declared: list[tuple[int, ...]], file_size: int) -> None:
    """After ``allocate_tensors`` (shapes propagated from the inputs, nothing run yet): every tensor has the
    shape the file declares, and all of them together stay within the memory bound. A damaged input shape
    otherwise grows every activation after it, far past anything the file declares."""
    try:
        details = interpreter.get_tensor_details()
    except (ValueError, RuntimeError) as exc:
        raise SparseLabError(f"The TFLite interpreter cannot list this file's tensors ({exc}): the file is "
                             f"damaged.") from exc
    total = 0
    for detail in details:
        index, shape = detail["index"], tuple(int(d) for d in detail["shape"])
        if index < len(declared) and shape != declared[index]:
            raise SparseLabError(f"This .tflite file is damaged: tensor {index} ({detail['name'][:60]}) is declared "
                                 f"{list(declared[index])} but its inputs make it {list(shape)}. It was refused "
                                 f"before running the model; export the model again.")
        total += int(np.prod(shape, dtype=np.float64)) * np.dtype(detail["dtype"]).itemsize
    limit = max(ACTIVATION_LIMIT, ACTIVATION_FILE_FACTOR * file_size)
    if total > limit:
        raise SparseLabError(f"This .tflite file's tensors would take {total:,} bytes, more than the {limit:,} "
                             f"allowed for a {file_size:,}-byte model: it is damaged or not a model to inspect here.")


def open_for_reading(data: bytes) -> Interpreter:
    """An interpreter with every tensor kept and no delegate, after one run on zeros (DENSIFY has run)."""
    check_identifier(data)
    try:
        interpreter = Interpreter(model_content=bytes(data), experimental_preserve_all_tensors=True,
                                  experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    except (ValueError, RuntimeError) as exc:
        raise SparseLabError(f"The TFLite interpreter rejects this file: {exc}") from exc
    declared = check_structure(data)  # the interpreter verified the flatbuffer; this checks what it holds
    try:
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise SparseLabError(f"The TFLite interpreter rejects this file: {exc}") from exc
    check_resolved_shapes(interpreter, declared, len(data))
    try:
        for detail in interpreter.get_input_details():
            interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
        interpreter.invoke()
    except (ValueError, RuntimeError) as exc:
        raise SparseLabError(f"The TFLite interpreter rejects this file: {exc}") from exc
    return interpreter


def _dequantized(values: np.ndarray, detail: dict) -> np.ndarray:
    quant = detail["quantization_parameters"]
    if not np.issubdtype(values.dtype, np.integer) or not len(quant["scales"]):
        return values.astype(np.float32)
    shape = [1] * values.ndim
    if len(quant["scales"]) > 1:
        shape[quant["quantized_dimension"]] = -1
    scales = np.asarray(quant["scales"], np.float32).reshape(shape)
    zero_points = np.asarray(quant["zero_points"], np.float32).reshape(shape)
    return (values.astype(np.float32) - zero_points) * scales


def _weight(interpreter: Interpreter, op: dict, producers: dict[int, dict], details: dict[int, dict],
            mn: tuple[int, int] | None) -> WeightTensor:
    used = int(op["inputs"][1])
    stored, chain = used, []
    while stored in producers and producers[stored]["op_name"] in PASS_THROUGH_OPS:
        if len(chain) > len(producers) or not len(producers[stored]["inputs"]):
            raise SparseLabError(f"The {op['op_name']} weight tensor {used} is produced by a cycle or an empty "
                                 f"{producers[stored]['op_name']}: the .tflite file is damaged.")
        chain.append(producers[stored]["op_name"])
        stored = int(producers[stored]["inputs"][0])
    stored_detail = details[stored]
    values = _dequantized(interpreter.get_tensor(used), details[used])
    return WeightTensor(name=stored_detail["name"], op=op["op_name"], shape=tuple(int(d) for d in values.shape),
                        stored_dtype=np.dtype(stored_detail["dtype"]).name, stored_sparse="DENSIFY" in chain,
                        zeros=int(values.size - np.count_nonzero(values)),
                        mn=check_m_by_n(values, *mn) if mn else None, values=values)


def inspect_tflite(data: bytes, mn: tuple[int, int] | None = None) -> TfliteInspection:
    """Every weight of the model in ``data`` (a .tflite file's bytes), checked for ``mn`` = (m, n) if given."""
    interpreter = open_for_reading(data)
    try:
        ops = interpreter._get_ops_details()  # no public API lists the ops
        details = {detail["index"]: detail for detail in interpreter.get_tensor_details()}
    except (ValueError, RuntimeError) as exc:  # e.g. a tensor name that is not UTF-8
        raise SparseLabError(f"The TFLite interpreter cannot list this file's ops and tensors ({exc}): "
                             f"the file is damaged.") from exc
    producers = {int(output): op for op in ops for output in op["outputs"]}
    seen, tensors = set(), []
    for op in ops:
        if op["op_name"] not in WEIGHT_OPS:
            continue
        if len(op["inputs"]) < 2 or int(op["inputs"][1]) not in details:
            raise SparseLabError(f"A {op['op_name']} op of this .tflite file has no weight input (inputs "
                                 f"{list(op['inputs'])}): the file is damaged.")
        if int(op["inputs"][1]) not in seen:
            seen.add(int(op["inputs"][1]))
            try:
                tensors.append(_weight(interpreter, op, producers, details, mn))
            except (ValueError, IndexError, KeyError, TypeError) as exc:
                raise SparseLabError(f"The weight of a {op['op_name']} op (tensor {int(op['inputs'][1])}) cannot "
                                     f"be read back ({exc}): its shape or quantization parameters are damaged."
                                     ) from exc
    return TfliteInspection(size_bytes=len(data), tensors=tuple(tensors), mn=mn)


def _lines(start: int, length: int, every: int) -> list[float]:
    """Positions (cell i spans i - 0.5 .. i + 0.5) where a group of ``every`` ends inside the window."""
    return [i - 0.5 for i in range(1, length) if every > 1 and (start + i) % every == 0]


def weight_heatmap(tensor: WeightTensor, n: int | None = None, row_start: int = 0, col_start: int = 0,
                   rows: int = 64, cols: int = 64) -> Heatmap:
    """Nonzero pattern of a window of ``tensor.matrix``; lines between output channels and m:n groups of ``n``."""
    window = tensor.matrix[row_start:row_start + rows, col_start:col_start + cols]
    rows_per_output = int(np.prod(tensor.shape[1:-1])) if len(tensor.shape) > 2 else 1
    return Heatmap(mask=(window != 0).astype(np.uint8), row_start=row_start, col_start=col_start,
                   row_lines=_lines(row_start, window.shape[0], rows_per_output),
                   col_lines=_lines(col_start, window.shape[1], n or 1))
