"""The "Saving PruneBERT" notebook's HDF5 layout, faithfully.

Each quantized weight is stored as ``<m>._packed_params.weight.int_repr.{data,
indptr,indices}`` (CSR: int8 data, uint16 indices, int32 indptr; indices fall
back to int32 when a row is wider than 65535, as the notebook said it should),
with scale, zero point and shape as attributes; biases, LayerNorm and any other
tensor as gzip-9 datasets; one-element tensors as attributes. The notebook kept
``_metadata`` in a side file; here it is the ``metadata`` attribute, so one file
travels. Per-channel scales (not in the notebook) go to ``weight.scales`` /
``weight.zero_points`` datasets with a ``weight.axis`` attribute. SparseLab adds a
``version`` attribute (absent in the notebook's files, which read as version 1).

Reading checks every dataset before it is read (``validation``): shapes and
dtypes against the model, CSR row pointers and column indices before they index
anything, so a damaged file is refused with a message instead of crashing scipy.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import scipy.sparse

from core.errors import SparseLabError
from core.storage.h5_files import FORMAT_ATTR, METADATA_ATTR, RESERVED_ATTRS, atomic_h5_writer, open_h5
from core.storage.quantized_state import QuantizedLinear, QuantizedState, QuantizedWeight
from core.storage.validation import (
    INT_KINDS,
    UNCHECKED_LAYER_LIMIT,
    ExpectedLayout,
    ExpectedLinear,
    check_csr,
    check_output_qparams,
    check_qparams,
    checked_metadata,
    format_name,
    format_version,
    json_attr,
    keys,
    read_checked,
    scalar_attr,
    small_attr,
)

NAME = "prunebert"
VERSION = 1  # files without a version attribute (the notebook's) are version 1
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
        h5.attrs["version"] = VERSION
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
    return format_name(h5) == NAME or any(k.endswith(f"{_WEIGHT}.int_repr.indptr") for k in keys(h5))


def load(path: Path, expected: ExpectedLayout | None = None) -> QuantizedState:
    """The state in ``path``, every dataset checked before it is read: against ``expected`` (the model the
    file will be loaded into) when given, else only for internal consistency and a size bound."""
    with open_h5(path) as h5:
        if not is_prunebert_file(h5):
            raise SparseLabError(f"'{Path(path).name}' is not a PruneBERT-layout file.")
        format_version(h5, VERSION, "PruneBERT", Path(path).name)
        names = keys(h5)
        modules = [k[: -len(f"{_WEIGHT}.int_repr.indptr")] for k in names if k.endswith(f"{_WEIGHT}.int_repr.indptr")]
        state = QuantizedState(metadata=checked_metadata(json_attr(h5, METADATA_ATTR), expected))
        for module in modules:
            state.linears[module] = _read_linear(h5, module, expected.linear(module) if expected else None)
        owned = {module + suffix for module in modules for suffix in (".scale", ".zero_point", "._packed_params.dtype")}
        weights = tuple(m + _WEIGHT for m in modules)
        for name in keys(h5.attrs):
            if name not in owned and name not in RESERVED_ATTRS and not name.startswith(weights):
                state.tensors[name] = _read_attr_tensor(h5, name, expected)
        packed = tuple(m + "._packed_params." for m in modules)
        for name in names:
            if not name.startswith(packed):
                state.tensors[name] = _read_tensor(h5, name, expected)
        if expected is not None:
            expected.check_complete(state.linears, state.tensors)
        return state


def _read_tensor(h5, name: str, expected: ExpectedLayout | None) -> np.ndarray:
    what = f"Tensor '{name}'"
    if expected is None:
        return read_checked(h5, name, what, "fiub", max_size=UNCHECKED_LAYER_LIMIT)
    tensor = expected.tensor(name)
    return read_checked(h5, name, what, tensor.kind, shape=tensor.shape)


def _read_attr_tensor(h5, name: str, expected: ExpectedLayout | None) -> np.ndarray:
    """A one-element tensor kept as an attribute, shaped as the model's."""
    tensor = expected.tensor(name) if expected else None
    value = small_attr(h5, name, f"tensor '{name}'", tensor.kind if tensor else "fiub", limit=1)
    return value.reshape(tensor.shape) if tensor else value


def _read_linear(h5, module: str, expected: ExpectedLinear | None) -> QuantizedLinear:
    prefix = module + _WEIGHT
    declared = small_attr(h5, f"{prefix}.int_repr.shape", f"weight shape of layer '{module}'", INT_KINDS, limit=2)
    shape = tuple(int(n) for n in declared.ravel())
    if len(shape) != 2 or min(shape) < 0:
        raise SparseLabError(f"Layer '{module}' declares weight shape {shape}; a Linear weight has two "
                             f"non-negative dimensions. The file is damaged.")
    if expected is not None and shape != expected.shape:
        raise SparseLabError(f"Layer '{module}' is {shape} in the file but {expected.shape} in the model.")
    rows, cols = shape
    if expected is None and rows * cols > UNCHECKED_LAYER_LIMIT:
        raise SparseLabError(f"Layer '{module}' declares a {rows}x{cols} weight, more than the "
                             f"{UNCHECKED_LAYER_LIMIT:,} elements allowed without a model to check it against.")
    data = read_checked(h5, f"{prefix}.int_repr.data", f"Layer '{module}' weight values (data)", "i",
                        dtypes=(np.int8,), ndim=1, max_size=rows * cols)
    indptr = read_checked(h5, f"{prefix}.int_repr.indptr", f"Layer '{module}' row pointers (indptr)", INT_KINDS,
                          ndim=1, max_size=rows + 1)
    indices = read_checked(h5, f"{prefix}.int_repr.indices", f"Layer '{module}' column indices (indices)",
                           INT_KINDS, ndim=1, max_size=rows * cols)
    check_csr(module, shape, indptr, indices, data.size)
    int_repr = np.zeros(shape, np.int8)
    int_repr[np.repeat(np.arange(rows), np.diff(indptr.astype(np.int64))), indices.astype(np.int64)] = data
    if f"{prefix}.axis" in h5.attrs:
        axis = int(scalar_attr(h5, f"{prefix}.axis", f"per-channel axis of layer '{module}'", INT_KINDS))
        channels = max(rows, cols)
        scales = read_checked(h5, f"{prefix}.scales", f"Layer '{module}' scales", "f", ndim=1, max_size=channels)
        zero_points = read_checked(h5, f"{prefix}.zero_points", f"Layer '{module}' zero points", INT_KINDS,
                                   ndim=1, max_size=channels)
        scales, zero_points = scales.astype(np.float64), zero_points.astype(np.int64)
    else:
        scales = np.array([scalar_attr(h5, f"{prefix}.scale", f"scale of layer '{module}'", "fiu")], np.float64)
        zero_points = np.array([scalar_attr(h5, f"{prefix}.zero_point", f"zero point of layer '{module}'",
                                            INT_KINDS)], np.int64)
        axis = None
    check_qparams(module, scales, zero_points, axis, expected, shape)
    bias_key = module + _BIAS
    if expected is not None and (bias_key in h5) != expected.has_bias:
        raise SparseLabError(f"Layer '{module}' has a bias in only one of the file and the model.")
    bias = read_checked(h5, bias_key, f"Bias of layer '{module}'", "f", shape=(rows,)) if bias_key in h5 else None
    output_scale = float(scalar_attr(h5, f"{module}.scale", f"output scale of layer '{module}'", "fiu", default=1.0))
    output_zero_point = scalar_attr(h5, f"{module}.zero_point", f"output zero point of layer '{module}'", "fiu",
                                    default=0)
    check_output_qparams(module, output_scale, output_zero_point)
    return QuantizedLinear(weight=QuantizedWeight(int_repr, scales, zero_points, axis),
                           bias=None if bias is None else bias.astype(np.float32),
                           output_scale=output_scale, output_zero_point=int(output_zero_point))
