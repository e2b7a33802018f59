"""SparseLab's own layout: the same quantized model in fewer bytes than PruneBERT's.

Where the notebook writes three gzip'd CSR arrays per layer (uint16 indices cost
two bytes per nonzero and compress poorly), this layout keeps all layers in a few
long streams: nonzero int8 values in one dataset, nonzero positions as one-byte
gaps (``gap_coding``) in another, and small per-layer tables for shapes, scales
and biases. Long homogeneous streams give gzip more context and cut HDF5's
per-dataset overhead; other tensors are stored with the byte-shuffle filter,
which groups the bytes of floats for the compressor. Reload gives the identical
int8 tensors, scales and zero points.

Reading never trusts the file: the per-layer tables are checked against the
model (``validation``) before the streams they describe are read, and each
position stream must encode exactly its layer's value count inside its rows.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from core.errors import SparseLabError
from core.storage.gap_coding import ESCAPE, decode_checked, encode_positions
from core.storage.h5_files import FORMAT_ATTR, METADATA_ATTR, atomic_h5_writer, open_h5
from core.storage.quantized_state import QuantizedLinear, QuantizedState, QuantizedWeight
from core.storage.validation import (
    INT_KINDS,
    UNCHECKED_LAYER_LIMIT,
    ExpectedLayout,
    check_dataset,
    check_output_qparams,
    check_qparams,
    checked_metadata,
    dataset,
    format_name,
    format_version,
    group,
    json_attr,
    keys,
    read,
    read_checked,
)

NAME = "sparselab"
VERSION = 1
GZIP = {"compression": "gzip", "compression_opts": 9}
SHUFFLED = {**GZIP, "shuffle": True}
NO_AXIS = -1
NO_BIAS = -1
UNCHECKED_LAYER_COUNT = 100_000  # layers a file may list when there is no model to compare with


def _split(stream: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    return np.split(stream, np.cumsum(lengths)[:-1]) if len(lengths) else []


def save(state: QuantizedState, path: Path, attrs: dict | None = None) -> None:
    names = list(state.linears)
    layers = [state.linears[n] for n in names]
    values, gaps = [], []
    for layer in layers:
        flat = layer.weight.int_repr.ravel()
        positions = np.flatnonzero(flat)
        values.append(flat[positions])
        gaps.append(encode_positions(positions))
    with atomic_h5_writer(path, attrs) as h5:
        h5.attrs[FORMAT_ATTR] = NAME
        h5.attrs["version"] = VERSION
        h5.attrs[METADATA_ATTR] = json.dumps(state.metadata)
        group = h5.create_group("linear")
        group.create_dataset("names", data=np.array(names, dtype=object), dtype=h5py.string_dtype())
        shapes = np.array([l.weight.int_repr.shape for l in layers], np.int64).reshape(-1, 2)
        group.create_dataset("shapes", data=shapes)
        group.create_dataset("nnz", data=np.array([len(v) for v in values], np.int64))
        group.create_dataset("gap_bytes", data=np.array([len(g) for g in gaps], np.int64))
        group.create_dataset("values", data=_concat(values, np.int8), **GZIP)
        group.create_dataset("gaps", data=_concat(gaps, np.uint8), **GZIP)
        group.create_dataset("scale_counts", data=np.array([len(l.weight.scales) for l in layers], np.int64))
        group.create_dataset("scales", data=_concat([l.weight.scales for l in layers], np.float64), **SHUFFLED)
        group.create_dataset("zero_points", data=_concat([l.weight.zero_points for l in layers], np.int64), **SHUFFLED)
        group.create_dataset("axes", data=np.array([NO_AXIS if l.weight.axis is None else l.weight.axis
                                                    for l in layers], np.int64))
        group.create_dataset("bias_lengths", data=np.array([NO_BIAS if l.bias is None else len(l.bias)
                                                            for l in layers], np.int64))
        group.create_dataset("biases", data=_concat([l.bias for l in layers if l.bias is not None], np.float32),
                             **SHUFFLED)
        group.create_dataset("output_qparams", data=np.array([[l.output_scale, l.output_zero_point] for l in layers],
                                                             np.float64).reshape(-1, 2))
        tensors = h5.create_group("tensors")
        for name, array in state.tensors.items():
            tensors.create_dataset(name, data=array, **(SHUFFLED if array.size > 1 else {}))


def _concat(arrays: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate([np.asarray(a, dtype).ravel() for a in arrays]) if arrays else np.zeros(0, dtype)


def is_sparselab_file(h5) -> bool:
    return format_name(h5) == NAME


def load(path: Path, expected: ExpectedLayout | None = None) -> QuantizedState:
    """The state in ``path``, every dataset checked before it is read: against ``expected`` (the model the
    file will be loaded into) when given, else only for internal consistency and a size bound."""
    with open_h5(path) as h5:
        if not is_sparselab_file(h5):
            raise SparseLabError(f"'{Path(path).name}' is not a SparseLab-format file.")
        format_version(h5, VERSION, "SparseLab", Path(path).name)
        state = QuantizedState(metadata=checked_metadata(json_attr(h5, METADATA_ATTR), expected))
        state.linears.update(_read_linears(group(h5, "linear", "the quantized layers"), expected))
        tensors = group(h5, "tensors", "the other tensors")
        for name in keys(tensors):
            what = f"Tensor '{name}'"
            if expected is None:
                state.tensors[name] = read_checked(tensors, name, what, "fiub", max_size=UNCHECKED_LAYER_LIMIT)
            else:
                tensor = expected.tensor(name)
                state.tensors[name] = read_checked(tensors, name, what, tensor.kind, shape=tensor.shape)
        if expected is not None:
            expected.check_complete(state.linears, state.tensors)
        return state


def _table(group, name: str, what: str, kinds: str, shape: tuple[int, ...], dtypes=None) -> np.ndarray:
    return read_checked(group, name, f"The layer table 'linear/{name}' ({what})", kinds, shape=shape, dtypes=dtypes)


def _read_linears(group, expected: ExpectedLayout | None) -> dict[str, QuantizedLinear]:
    """Per-layer tables first (small, bounded by the model's layer count), each checked against the model;
    then the long streams, whose lengths the checked tables fix, and only then the dense weights."""
    names_node = dataset(group, "names", "layer names")
    check_dataset(names_node, "The layer table 'linear/names'", "OSU", ndim=1,
                  max_size=len(expected.linears) if expected else UNCHECKED_LAYER_COUNT)
    names = [n.decode(errors="replace") if isinstance(n, bytes) else str(n)
             for n in read(names_node, "The layer table 'linear/names'")]
    if len(set(names)) != len(names):
        raise SparseLabError(f"The file names layer '{next(n for n in names if names.count(n) > 1)}' twice: "
                             f"it is damaged.")
    count = len(names)
    wanted = [expected.linear(n) for n in names] if expected else [None] * count
    shapes = [tuple(int(n) for n in row) for row in _table(group, "shapes", "weight shapes", INT_KINDS, (count, 2))]
    for name, shape, layer in zip(names, shapes, wanted):
        if layer is not None and shape != layer.shape:
            raise SparseLabError(f"Layer '{name}' is {shape} in the file but {layer.shape} in the model.")
        if min(shape) < 0 or shape[0] * shape[1] > UNCHECKED_LAYER_LIMIT:
            raise SparseLabError(f"Layer '{name}' declares a {shape[0]}x{shape[1]} weight, which no model "
                                 f"SparseLab stores has: the file is damaged.")
    sizes = [rows * cols for rows, cols in shapes]
    nnz = [int(n) for n in _table(group, "nnz", "values per layer", INT_KINDS, (count,))]
    gap_bytes = [int(n) for n in _table(group, "gap_bytes", "position bytes per layer", INT_KINDS, (count,))]
    for name, size, values, stream in zip(names, sizes, nnz, gap_bytes):
        if not 0 <= values <= size:
            raise SparseLabError(f"Layer '{name}' declares {values} stored values, but its weight has only "
                                 f"{size} elements. The file is damaged.")
        most = values + (size - values) // ESCAPE  # every position takes one byte, plus one per 255 skipped
        if not values <= stream <= most:
            raise SparseLabError(f"Layer '{name}' declares a position stream of {stream} bytes for {values} "
                                 f"values; it must be {values} to {most} bytes. The file is damaged.")
    scale_counts = [int(n) for n in _table(group, "scale_counts", "scales per layer", INT_KINDS, (count,))]
    axes = [int(n) for n in _table(group, "axes", "per-channel axes", INT_KINDS, (count,))]
    bias_lengths = [int(n) for n in _table(group, "bias_lengths", "bias lengths", INT_KINDS, (count,))]
    for name, shape, scales, bias, layer in zip(names, shapes, scale_counts, bias_lengths, wanted):
        if not 1 <= scales <= max(shape):
            raise SparseLabError(f"Layer '{name}' declares {scales} scales; a {shape[0]}x{shape[1]} weight has "
                                 f"1 (per-tensor) or one per channel. The file is damaged.")
        if bias not in (NO_BIAS, shape[0]):
            raise SparseLabError(f"Layer '{name}' declares a bias of {bias} values; its weight has {shape[0]} "
                                 f"outputs. The file is damaged.")
        if layer is not None and (bias != NO_BIAS) != layer.has_bias:
            raise SparseLabError(f"Layer '{name}' has a bias in only one of the file and the model.")
    values = _split(_table(group, "values", "nonzero values", "i", (sum(nnz),), dtypes=(np.int8,)), nnz)
    gaps = _split(_table(group, "gaps", "nonzero positions", "u", (sum(gap_bytes),), dtypes=(np.uint8,)), gap_bytes)
    scales = _split(_table(group, "scales", "weight scales", "f", (sum(scale_counts),)).astype(np.float64),
                    scale_counts)
    zero_points = _split(_table(group, "zero_points", "weight zero points", INT_KINDS,
                                (sum(scale_counts),)).astype(np.int64), scale_counts)
    stored_biases = [n for n in bias_lengths if n != NO_BIAS]
    biases = iter(_split(_table(group, "biases", "biases", "f", (sum(stored_biases),)).astype(np.float32),
                         stored_biases))
    output_qparams = _table(group, "output_qparams", "output scales and zero points", "fiu", (count, 2))
    linears = {}
    for i, (name, shape, layer) in enumerate(zip(names, shapes, wanted)):
        axis = None if axes[i] == NO_AXIS else axes[i]
        check_qparams(name, scales[i], zero_points[i], axis, layer, shape)
        scale, zero_point = (float(v) for v in output_qparams[i])
        check_output_qparams(name, scale, zero_point)
        positions = decode_checked(gaps[i], nnz[i], shape, name)
        int_repr = np.zeros(sizes[i], np.int8)
        int_repr[positions] = values[i]
        linears[name] = QuantizedLinear(
            weight=QuantizedWeight(int_repr.reshape(shape), scales[i], zero_points[i], axis),
            bias=None if bias_lengths[i] == NO_BIAS else next(biases),
            output_scale=scale, output_zero_point=int(zero_point))
    return linears
