"""Reading the weights of any .tflite file: shapes, sparsity, m:n pattern and heatmap windows.

Weights are read through the interpreter with every tensor preserved and no
delegate: with EXPERIMENTAL_SPARSITY a weight is stored compressed and a DENSIFY
op rebuilds it at run time, and with XNNPACK on, the densified tensors read back
as garbage. Quantized weights are dequantized (their zero point is 0, so zeros
stay zeros). ``ai_edge_litert`` is the interpreter; it has its own
``OpResolverType`` enum.
"""

from __future__ import annotations

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
        return next(t for t in self.tensors if t.name == name)

    def as_dict(self) -> dict:
        return {"size_bytes": self.size_bytes, "mn": f"{self.mn[0]}:{self.mn[1]}" if self.mn else None,
                "mn_holding": self.mn_holding(), "tensors": [t.as_dict() for t in self.tensors]}


def check_identifier(data: bytes) -> None:
    """A TFLite flatbuffer carries the file identifier 'TFL3' at bytes 4..8."""
    if len(data) < 8 or data[4:8] != TFLITE_IDENTIFIER:
        found = f"{bytes(data[4:8])!r} there" if len(data) >= 8 else f"only {len(data)} bytes"
        raise SparseLabError(f"This is not a TFLite model: a .tflite file carries the identifier 'TFL3' at "
                             f"bytes 4-8, and this one has {found}.")


def open_for_reading(data: bytes) -> Interpreter:
    """An interpreter with every tensor kept and no delegate, after one run on zeros (DENSIFY has run)."""
    check_identifier(data)
    try:
        interpreter = Interpreter(model_content=bytes(data), experimental_preserve_all_tensors=True,
                                  experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        interpreter.allocate_tensors()
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
    ops = interpreter._get_ops_details()  # no public API lists the ops
    details = {detail["index"]: detail for detail in interpreter.get_tensor_details()}
    producers = {int(output): op for op in ops for output in op["outputs"]}
    seen, tensors = set(), []
    for op in ops:
        if op["op_name"] in WEIGHT_OPS and int(op["inputs"][1]) not in seen:
            seen.add(int(op["inputs"][1]))
            tensors.append(_weight(interpreter, op, producers, details, mn))
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
