"""Checking an untrusted model file against the model it claims to hold, before reading anything large.

A model file is data from anywhere: a damaged disk, a truncated download, a
hand-edited file. Every dataset's shape and dtype is compared with the model's
corresponding parameter (``ExpectedLayout``, built from the quantized model the
file will be loaded into) before the dataset is read, so no read is ever larger
than the model itself; sparse index arrays are checked (CSR row pointers and
column indices, gap streams) before they index anything. A file that fails a
check gets a ``SparseLabError`` that names the tensor, what was expected and
what was found.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

import h5py
import numpy as np
import torch

from core.errors import SparseLabError
from core.storage.h5_files import FORMAT_ATTR
from core.storage.quantized_state import DTYPE_SUFFIX, PACKED_SUFFIX

# Without a model to compare with (direct format-level reads in tests and tools), no layer may
# declare more elements than this: 2**28 int8 weights is far beyond any BERT-large matrix.
UNCHECKED_LAYER_LIMIT = 2 ** 28
# Small attributes (shapes, scales, zero points) are a handful of numbers; JSON attributes a few kB.
SMALL_ATTR_LIMIT = 64
TEXT_ATTR_LIMIT = 4 * 2 ** 20
INT8_RANGE = (-128, 127)
FLOAT_KINDS = "f"
INT_KINDS = "iu"


@dataclass(frozen=True)
class ExpectedLinear:
    """A quantized Linear of the model: weight (out, in), whether it has a bias, per-channel axis or None."""

    shape: tuple[int, int]
    has_bias: bool
    axis: int | None

    @property
    def scale_count(self) -> int:
        return 1 if self.axis is None else self.shape[self.axis]


@dataclass(frozen=True)
class ExpectedTensor:
    shape: tuple[int, ...]
    kind: str  # numpy dtype kind(s) accepted: "f" for floats, "iu" for integers, "b" for bool

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass
class ExpectedLayout:
    """What a file may hold for one model: its quantized Linears and other tensors, and which are required."""

    linears: dict[str, ExpectedLinear] = field(default_factory=dict)
    tensors: dict[str, ExpectedTensor] = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)
    required: Callable[[str], bool] = lambda name: True

    @classmethod
    def of(cls, template: dict, required: Callable[[str], bool] = lambda name: True) -> ExpectedLayout:
        """The layout of a quantized model's state dict ``template``; ``required(name)`` marks tensors a file
        must hold (embeddings may be left out)."""
        layout = cls(metadata=dict(getattr(template, "_metadata", {}) or {}), required=required)
        modules = {name[: -len(PACKED_SUFFIX)] for name in template if name.endswith(PACKED_SUFFIX)}
        for module in modules:
            weight, bias = template[module + PACKED_SUFFIX]
            per_tensor = weight.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric)
            axis = None if per_tensor else int(weight.q_per_channel_axis())
            layout.linears[module] = ExpectedLinear(tuple(int(n) for n in weight.shape), bias is not None, axis)
        owned = {m + suffix for m in modules for suffix in (".scale", ".zero_point", DTYPE_SUFFIX, PACKED_SUFFIX)}
        for name, value in template.items():
            if name not in owned:
                kind = "f" if value.is_floating_point() else "b" if value.dtype == torch.bool else INT_KINDS
                layout.tensors[name] = ExpectedTensor(tuple(int(n) for n in value.shape), kind)
        return layout

    def linear(self, module: str) -> ExpectedLinear:
        if module not in self.linears:
            raise SparseLabError(f"The file has a quantized layer '{module}' that this model does not have: "
                                 f"it was saved from a different model; load it with the model it was made from.")
        return self.linears[module]

    def tensor(self, name: str) -> ExpectedTensor:
        if name not in self.tensors:
            raise SparseLabError(f"The file has a tensor '{name}' that this model does not have: it was saved "
                                 f"from a different model (or is damaged); load it with the model it was made from.")
        return self.tensors[name]

    def check_complete(self, linears, tensors) -> None:
        """Every quantized layer, and every required tensor, of the model is in the file."""
        missing = [m for m in self.linears if m not in linears]
        missing += [t for t in self.tensors if self.required(t) and t not in tensors]
        if missing:
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            raise SparseLabError(f"The file lacks {', '.join(repr(m) for m in missing[:3])}{more}, which this model "
                                 f"has: the file is incomplete or was saved from a different model.")


# --- datasets and attributes -------------------------------------------------------------------------------------

def dataset(h5, path: str, what: str) -> h5py.Dataset:
    """The dataset at ``path``, refusing a missing one, a group, and storage outside the file."""
    try:
        node = h5.get(path)
    except (KeyError, OSError, RuntimeError, ValueError) as exc:
        raise SparseLabError(f"The dataset '{path}' ({what}) cannot be read: the file is damaged ({exc}).") from exc
    if node is None:
        raise SparseLabError(f"The file lacks the dataset '{path}' ({what}): it is incomplete or damaged.")
    if not isinstance(node, h5py.Dataset):
        raise SparseLabError(f"'{path}' ({what}) should be a dataset but is a {type(node).__name__} in the file.")
    if node.is_virtual or node.external:
        raise SparseLabError(f"The dataset '{path}' ({what}) keeps its data outside the file (external or virtual "
                             f"storage); model files must be self-contained, so it is not read.")
    return node


def check_dataset(node: h5py.Dataset, what: str, kinds: str, shape: tuple[int, ...] | None = None,
                  max_size: int | None = None, dtypes: tuple | None = None, ndim: int | None = None) -> None:
    """Refuse a dataset whose dtype kind, shape or element count is not what the model allows, before reading it."""
    dtype = node.dtype
    if dtype.kind not in kinds or dtype.fields is not None or dtype.subdtype is not None or (
            dtype.kind in "fiub" and dtype.itemsize > 8) or (
            dtypes is not None and dtype not in [np.dtype(d) for d in dtypes]):
        wanted = " or ".join(np.dtype(d).name for d in dtypes) if dtypes else _kind_names(kinds)
        raise SparseLabError(f"{what} is stored as {_dtype_name(dtype)} where {wanted} is expected: "
                             f"the file is damaged or not a SparseLab/PruneBERT file.")
    if shape is not None and tuple(node.shape) != tuple(shape):
        raise SparseLabError(f"{what} has shape {tuple(node.shape)} in the file but {tuple(shape)} in the model: "
                             f"the file is damaged or was saved from a different model.")
    if ndim is not None and len(node.shape) != ndim:
        raise SparseLabError(f"{what} has {len(node.shape)} dimensions {tuple(node.shape)} where {ndim} are "
                             f"expected: the file is damaged.")
    size = int(np.prod(node.shape, dtype=np.float64))  # float: a damaged shape may overflow int64
    if max_size is not None and size > max_size:
        raise SparseLabError(f"{what} declares {size:,} elements, more than the {max_size:,} the model allows: "
                             f"the file is damaged; refused before reading it.")
    if node.chunks is not None:
        chunk = int(np.prod(node.chunks, dtype=np.float64)) * dtype.itemsize
        if chunk > max(size * dtype.itemsize, 2 ** 20):
            raise SparseLabError(f"{what} declares storage chunks of {chunk:,} bytes for {size:,} elements: "
                                 f"the file is damaged; refused before reading it.")


def read(node: h5py.Dataset, what: str) -> np.ndarray:
    """Read a dataset already checked by ``check_dataset``; HDF5 read errors become a message."""
    try:
        return np.asarray(node[()])
    except (OSError, RuntimeError, ValueError, TypeError) as exc:
        raise SparseLabError(f"{what} cannot be read: its stored bytes are damaged ({exc}).") from exc


def read_checked(h5, path: str, what: str, kinds: str, shape=None, max_size=None, dtypes=None,
                 ndim=None) -> np.ndarray:
    node = dataset(h5, path, what)
    check_dataset(node, what, kinds, shape, max_size, dtypes, ndim)
    return read(node, what)


def attr_shape(h5, name: str) -> tuple[int, ...]:
    try:
        return tuple(h5.attrs.get_id(name).shape or ())
    except (KeyError, OSError, RuntimeError, ValueError) as exc:
        raise SparseLabError(f"The attribute '{name}' cannot be read: the file is damaged ({exc}).") from exc


def small_attr(h5, name: str, what: str, kinds: str, limit: int = SMALL_ATTR_LIMIT, default=None):
    """A numeric attribute of at most ``limit`` elements, checked before it is read; ``default`` when absent."""
    if name not in h5.attrs:
        if default is not None:
            return np.asarray(default)
        raise SparseLabError(f"The file lacks the attribute '{name}' ({what}): it is incomplete or damaged.")
    shape = attr_shape(h5, name)
    size = int(np.prod(shape, dtype=np.float64))
    if size > limit:
        raise SparseLabError(f"The attribute '{name}' ({what}) holds {size:,} values where at most {limit} are "
                             f"expected: the file is damaged.")
    try:
        value = np.asarray(h5.attrs[name])
    except (KeyError, OSError, RuntimeError, ValueError, TypeError) as exc:
        raise SparseLabError(f"The attribute '{name}' ({what}) cannot be read: the file is damaged ({exc}).") from exc
    if value.dtype.kind not in kinds or value.dtype.fields is not None:
        raise SparseLabError(f"The attribute '{name}' ({what}) is {_dtype_name(value.dtype)} where "
                             f"{_kind_names(kinds)} is expected: the file is damaged.")
    return value


def scalar_attr(h5, name: str, what: str, kinds: str, default=None):
    value = small_attr(h5, name, what, kinds, limit=1, default=default)
    if value.size != 1:
        raise SparseLabError(f"The attribute '{name}' ({what}) should be one number but holds {value.size}.")
    return value.reshape(()).item()


def text_attr(h5, name: str, default: str | None = None) -> str | None:
    """A string attribute (format name, JSON), bounded in size; ``default`` when absent."""
    if name not in h5.attrs:
        return default
    if attr_shape(h5, name) not in ((), (1,)):
        raise SparseLabError(f"The attribute '{name}' should be one string but holds {attr_shape(h5, name)} values: "
                             f"the file is damaged.")
    try:
        value = h5.attrs[name]
    except (KeyError, OSError, RuntimeError, ValueError, TypeError) as exc:
        raise SparseLabError(f"The attribute '{name}' cannot be read: the file is damaged ({exc}).") from exc
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(()).item()
    if isinstance(value, bytes):
        try:
            value = value.decode()
        except UnicodeDecodeError as exc:
            raise SparseLabError(f"The attribute '{name}' is not valid UTF-8 text: the file is damaged.") from exc
    if not isinstance(value, str):
        raise SparseLabError(f"The attribute '{name}' should be text but is {type(value).__name__}: "
                             f"the file is damaged.")
    if len(value) > TEXT_ATTR_LIMIT:
        raise SparseLabError(f"The attribute '{name}' is {len(value):,} characters long, more than the "
                             f"{TEXT_ATTR_LIMIT:,} allowed: the file is damaged.")
    return value


def json_attr(h5, name: str) -> dict:
    text = text_attr(h5, name, "{}")
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise SparseLabError(f"The attribute '{name}' is not valid JSON ({exc}): the file is damaged.") from exc
    if not isinstance(value, dict):
        raise SparseLabError(f"The attribute '{name}' should be a JSON object but is {type(value).__name__}: "
                             f"the file is damaged.")
    return value


def format_version(h5, reader_version: int, format_name: str, filename: str) -> int:
    """The file's format version (files without one are version 1); newer versions are refused."""
    version = scalar_attr(h5, "version", "format version", INT_KINDS + "f", default=1)
    if not float(version).is_integer() or version < 0:
        raise SparseLabError(f"'{filename}' has format version {version!r}, which is not a version number: "
                             f"the file is damaged.")
    if version > reader_version:
        raise SparseLabError(f"'{filename}' was written by a newer SparseLab ({format_name} format version "
                             f"{int(version)}); this SparseLab reads {format_name} format version {reader_version} "
                             f"and older. Update SparseLab to read it.")
    return int(version)


def format_name(h5) -> str | None:
    """The file's ``sparselab_format`` attribute, or None; a damaged one is refused."""
    return text_attr(h5, FORMAT_ATTR)


def keys(node) -> list[str]:
    try:
        return list(node.keys())
    except (KeyError, OSError, RuntimeError, ValueError) as exc:
        raise SparseLabError(f"The file's list of datasets cannot be read: it is damaged ({exc}).") from exc


def group(h5, path: str, what: str) -> h5py.Group:
    try:
        node = h5.get(path)
    except (KeyError, OSError, RuntimeError, ValueError) as exc:
        raise SparseLabError(f"The group '{path}' ({what}) cannot be read: the file is damaged ({exc}).") from exc
    if not isinstance(node, h5py.Group):
        found = "missing" if node is None else f"a {type(node).__name__}"
        raise SparseLabError(f"The file's group '{path}' ({what}) is {found}: the file is incomplete or damaged.")
    return node


def checked_metadata(metadata: dict, layout: ExpectedLayout | None) -> dict:
    """The state dict ``_metadata`` of a file: module name -> {"version": int}; versions must be this torch's."""
    for module, entry in metadata.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("version", 0), int) or isinstance(
                entry.get("version", 0), bool):
            raise SparseLabError(f"The file's metadata entry for '{module}' should be {{\"version\": <int>}} but is "
                                 f"{str(entry)[:80]}: the file is damaged.")
        if layout is not None and module in layout.metadata and "version" in entry and \
                entry["version"] != layout.metadata[module].get("version"):
            raise SparseLabError(f"The file's metadata gives '{module}' version {entry['version']}, but this "
                                 f"PyTorch's model has version {layout.metadata[module].get('version')}: the file "
                                 f"is damaged or from an incompatible PyTorch.")
    return metadata


# --- values ------------------------------------------------------------------------------------------------------

def check_qparams(module: str, scales: np.ndarray, zero_points: np.ndarray, axis: int | None,
                  expected: ExpectedLinear | None, shape: tuple[int, int]) -> None:
    """Scales positive and finite, int8 zero points, one per channel along a valid axis (and the model's scheme)."""
    if axis is not None and axis not in (0, 1):
        raise SparseLabError(f"Layer '{module}' gives per-channel axis {axis}; a Linear weight has axes 0 and 1.")
    if expected is not None and axis != expected.axis:
        def scheme(a):
            return "per-tensor" if a is None else f"per-channel (axis {a})"

        raise SparseLabError(f"Layer '{module}' has {scheme(axis)} scales in the file, but the file's settings "
                             f"make the model {scheme(expected.axis)}: the file is damaged.")
    count = 1 if axis is None else shape[axis]
    if scales.size != count or zero_points.size != count:
        raise SparseLabError(f"Layer '{module}' has {scales.size} scales and {zero_points.size} zero points; "
                             f"its {'per-tensor' if axis is None else 'per-channel'} weight needs {count} of each.")
    if not np.all(np.isfinite(scales)) or np.any(scales <= 0):
        raise SparseLabError(f"Layer '{module}' has a scale that is not a positive finite number: the file is "
                             f"damaged.")
    if np.any(zero_points < INT8_RANGE[0]) or np.any(zero_points > INT8_RANGE[1]):
        raise SparseLabError(f"Layer '{module}' has a zero point outside int8's range {INT8_RANGE}: the file is "
                             f"damaged.")


def check_output_qparams(module: str, scale: float, zero_point) -> None:
    if not np.isfinite(scale) or not float(zero_point).is_integer() or abs(float(zero_point)) > 2 ** 31:
        raise SparseLabError(f"Layer '{module}' has output scale {scale!r} and zero point {zero_point!r}; "
                             f"a finite scale and an int32 zero point are expected: the file is damaged.")


def check_csr(module: str, shape: tuple[int, int], indptr: np.ndarray, indices: np.ndarray, nnz: int) -> None:
    """A canonical CSR matrix of ``shape``: row pointers from 0 to nnz, never decreasing; sorted in-range columns."""
    rows, cols = shape
    if indptr.ndim != 1 or indptr.size != rows + 1:
        raise SparseLabError(f"Layer '{module}': indptr has {indptr.size} entries; a {rows}x{cols} weight needs "
                             f"{rows + 1} (rows + 1). The file is damaged.")
    if indptr[0] != 0 or indptr[-1] != nnz:
        raise SparseLabError(f"Layer '{module}': indptr runs from {indptr[0]} to {indptr[-1]}; it must run from 0 "
                             f"to the {nnz} stored values. The file is damaged.")
    steps = np.diff(indptr.astype(np.int64))
    if np.any(steps < 0):
        row = int(np.flatnonzero(steps < 0)[0])
        raise SparseLabError(f"Layer '{module}': indptr decreases at row {row} ({indptr[row]} then "
                             f"{indptr[row + 1]}); row pointers must never decrease. The file is damaged.")
    if np.any(steps > cols):
        row = int(np.flatnonzero(steps > cols)[0])
        raise SparseLabError(f"Layer '{module}': row {row} claims {steps[row]} values but has only {cols} columns. "
                             f"The file is damaged.")
    if indices.size != nnz:
        raise SparseLabError(f"Layer '{module}': {indices.size} column indices for {nnz} values. The file is damaged.")
    if nnz:
        low, high = int(indices.min()), int(indices.max())
        if low < 0 or high >= cols:
            bad = low if low < 0 else high
            raise SparseLabError(f"Layer '{module}': column index {bad} is outside the weight's {cols} columns "
                                 f"(0..{cols - 1}). The file is damaged.")
        increasing = np.diff(indices.astype(np.int64)) > 0
        row_starts = indptr[1:-1]
        increasing[row_starts[(row_starts > 0) & (row_starts < nnz)] - 1] = True  # a new row may start lower
        if not np.all(increasing):
            raise SparseLabError(f"Layer '{module}': column indices repeat or go backwards within a row. "
                                 f"The file is damaged.")


def _dtype_name(dtype: np.dtype) -> str:
    if dtype.fields is not None:
        return "a compound type"
    if h5py.check_string_dtype(dtype) is not None or dtype.kind in "OSU":
        return "text"
    return dtype.name


def _kind_names(kinds: str) -> str:
    names = {"f": "floating point", "i": "integer", "u": "integer", "b": "boolean", "O": "text", "S": "text"}
    return " or ".join(dict.fromkeys(names.get(k, k) for k in kinds))
