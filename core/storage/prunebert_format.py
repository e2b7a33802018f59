"""The "Saving PruneBERT" notebook's HDF5 layout, faithfully.

Each quantized weight is stored as ``<m>._packed_params.weight.int_repr.{data,
indptr,indices}`` (CSR: int8 data, uint16 indices, int32 indptr; indices fall
back to int32 when a row is wider than 65535, as the notebook said it should),
with scale, zero point and shape as attributes; biases, LayerNorm and any other
tensor as gzip-9 datasets; one-element tensors as attributes. The notebook kept
``_metadata`` in a side file; here it is the ``metadata`` attribute, so one file
travels. Per-channel scales (not in the notebook) go to ``weight.scales`` /
``weight.zero_points`` datasets with a ``weight.axis`` attribute.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import scipy.sparse

from core.errors import SparseLabError
from core.storage.h5_files import FORMAT_ATTR, METADATA_ATTR, RESERVED_ATTRS, atomic_h5_writer, open_h5
from core.storage.quantized_state import QuantizedLinear, QuantizedState, QuantizedWeight

NAME = "prunebert"
GZIP = {"compression": "gzip", "compression_opts": 9}
UINT16_LIMIT = 65535
_WEIGHT = "._packed_params.weight"
_BIAS = "._packed_params.bias"


def index_dtype(columns: int) -> type:
    """uint16 column indices while every index fits, else int32."""
    return np.uint16 if columns <= UINT16_LIMIT else np.int32


def save(state: QuantizedState, path: Path, attrs: dict | None = None) -> None:
    with atomic_h5_writer(path, attrs) as h5:
        h5.attrs[FORMAT_ATTR] = NAME
        h5.attrs[METADATA_ATTR] = json.dumps(state.metadata)
        for module, layer in state.linears.items():
            _write_linear(h5, module, layer)
        for name, array in state.tensors.items():
            if array.size == 1:
                h5.attrs[name] = array.reshape(())
            else:
                h5.create_dataset(name, data=array, **GZIP)


def _write_linear(h5, module: str, layer: QuantizedLinear) -> None:
    weight = layer.weight
    csr = scipy.sparse.csr_matrix(weight.int_repr)
    prefix = module + _WEIGHT
    h5.create_dataset(f"{prefix}.int_repr.data", data=csr.data.astype(np.int8), **GZIP)
    h5.create_dataset(f"{prefix}.int_repr.indptr", data=csr.indptr.astype(np.int32), **GZIP)
    h5.create_dataset(f"{prefix}.int_repr.indices",
                      data=csr.indices.astype(index_dtype(weight.int_repr.shape[1])), **GZIP)
    h5.attrs[f"{prefix}.int_repr.shape"] = weight.int_repr.shape
    if weight.axis is None:
        h5.attrs[f"{prefix}.scale"] = float(weight.scales[0])
        h5.attrs[f"{prefix}.zero_point"] = int(weight.zero_points[0])
    else:
        h5.create_dataset(f"{prefix}.scales", data=weight.scales, **GZIP)
        h5.create_dataset(f"{prefix}.zero_points", data=weight.zero_points, **GZIP)
        h5.attrs[f"{prefix}.axis"] = weight.axis
    if layer.bias is not None:
        h5.create_dataset(module + _BIAS, data=layer.bias, **GZIP)
    h5.attrs[f"{module}.scale"] = layer.output_scale
    h5.attrs[f"{module}.zero_point"] = layer.output_zero_point
    h5.attrs[f"{module}._packed_params.dtype"] = "qint8"


def is_prunebert_file(h5) -> bool:
    return h5.attrs.get(FORMAT_ATTR) == NAME or any(k.endswith(f"{_WEIGHT}.int_repr.indptr") for k in h5.keys())


def load(path: Path) -> QuantizedState:
    with open_h5(path) as h5:
        if not is_prunebert_file(h5):
            raise SparseLabError(f"'{Path(path).name}' is not a PruneBERT-layout file.")
        modules = [k[: -len(f"{_WEIGHT}.int_repr.indptr")] for k in h5.keys()
                   if k.endswith(f"{_WEIGHT}.int_repr.indptr")]
        state = QuantizedState(metadata=json.loads(h5.attrs.get(METADATA_ATTR, "{}")))
        for module in modules:
            state.linears[module] = _read_linear(h5, module)
        owned = {module + suffix for module in modules for suffix in (".scale", ".zero_point", "._packed_params.dtype")}
        for name, value in h5.attrs.items():
            if name not in owned and name not in RESERVED_ATTRS and not name.startswith(
                    tuple(m + _WEIGHT for m in modules)):
                state.tensors[name] = np.asarray(value)
        for name, dataset in h5.items():
            if not name.startswith(tuple(m + "._packed_params." for m in modules)):
                state.tensors[name] = dataset[()]
        return state


def _read_linear(h5, module: str) -> QuantizedLinear:
    prefix = module + _WEIGHT
    shape = tuple(int(n) for n in h5.attrs[f"{prefix}.int_repr.shape"])
    csr = scipy.sparse.csr_matrix((h5[f"{prefix}.int_repr.data"][()], h5[f"{prefix}.int_repr.indices"][()].astype(np.int32),
                                   h5[f"{prefix}.int_repr.indptr"][()]), shape=shape)
    if f"{prefix}.axis" in h5.attrs:
        scales, zero_points = h5[f"{prefix}.scales"][()], h5[f"{prefix}.zero_points"][()]
        axis = int(h5.attrs[f"{prefix}.axis"])
    else:
        scales = np.array([float(h5.attrs[f"{prefix}.scale"])], np.float64)
        zero_points, axis = np.array([int(h5.attrs[f"{prefix}.zero_point"])], np.int64), None
    bias_key = module + _BIAS
    return QuantizedLinear(
        weight=QuantizedWeight(csr.toarray().astype(np.int8), scales, zero_points, axis),
        bias=h5[bias_key][()] if bias_key in h5 else None,
        output_scale=float(h5.attrs.get(f"{module}.scale", 1.0)),
        output_zero_point=int(h5.attrs.get(f"{module}.zero_point", 0)))
