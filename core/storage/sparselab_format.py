"""SparseLab's own layout: the same quantized model in fewer bytes than PruneBERT's.

Where the notebook writes three gzip'd CSR arrays per layer (uint16 indices cost
two bytes per nonzero and compress poorly), this layout keeps all layers in a few
long streams: nonzero int8 values in one dataset, nonzero positions as one-byte
gaps (``gap_coding``) in another, and small per-layer tables for shapes, scales
and biases. Long homogeneous streams give gzip more context and cut HDF5's
per-dataset overhead; other tensors are stored with the byte-shuffle filter,
which groups the bytes of floats for the compressor. Reload gives the identical
int8 tensors, scales and zero points.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from core.errors import SparseLabError
from core.storage.gap_coding import decode_positions, encode_positions
from core.storage.h5_files import FORMAT_ATTR, METADATA_ATTR, atomic_h5_writer, open_h5
from core.storage.quantized_state import QuantizedLinear, QuantizedState, QuantizedWeight

NAME = "sparselab"
VERSION = 1
GZIP = {"compression": "gzip", "compression_opts": 9}
SHUFFLED = {**GZIP, "shuffle": True}
NO_AXIS = -1
NO_BIAS = -1


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
        group.create_dataset("shapes", data=np.array([l.weight.int_repr.shape for l in layers], np.int64).reshape(-1, 2))
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
    return h5.attrs.get(FORMAT_ATTR) == NAME


def load(path: Path) -> QuantizedState:
    with open_h5(path) as h5:
        if not is_sparselab_file(h5):
            raise SparseLabError(f"'{Path(path).name}' is not a SparseLab-format file.")
        if int(h5.attrs.get("version", 0)) > VERSION:
            raise SparseLabError(f"'{Path(path).name}' was written by a newer SparseLab (format version "
                                 f"{h5.attrs['version']}); this one reads version {VERSION}.")
        group = h5["linear"]
        names = [n.decode() if isinstance(n, bytes) else n for n in group["names"][()]]
        shapes, nnz = group["shapes"][()], group["nnz"][()]
        values = _split(group["values"][()], nnz)
        gaps = _split(group["gaps"][()], group["gap_bytes"][()])
        scale_counts = group["scale_counts"][()]
        scales = _split(group["scales"][()], scale_counts)
        zero_points = _split(group["zero_points"][()], scale_counts)
        axes, output_qparams = group["axes"][()], group["output_qparams"][()]
        bias_lengths = group["bias_lengths"][()]
        biases = iter(_split(group["biases"][()], bias_lengths[bias_lengths != NO_BIAS]))
        state = QuantizedState(metadata=json.loads(h5.attrs.get(METADATA_ATTR, "{}")))
        for i, name in enumerate(names):
            int_repr = np.zeros(int(shapes[i][0]) * int(shapes[i][1]), np.int8)
            int_repr[decode_positions(gaps[i])] = values[i]
            axis = int(axes[i])
            scale, zero_point = output_qparams[i]
            state.linears[name] = QuantizedLinear(
                weight=QuantizedWeight(int_repr.reshape(shapes[i]), scales[i], zero_points[i],
                                       None if axis == NO_AXIS else axis),
                bias=None if bias_lengths[i] == NO_BIAS else next(biases),
                output_scale=float(scale), output_zero_point=int(zero_point))
        for name, dataset in h5["tensors"].items():
            state.tensors[name] = dataset[()]
        return state
