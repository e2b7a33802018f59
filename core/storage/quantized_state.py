"""A quantized model's state dict, decomposed into plain arrays and back.

Torch 2.13 keeps each dynamic Linear's weight and bias as one tuple under
``<module>._packed_params._packed_params``; a quantized weight is (int_repr,
scale(s), zero point(s)). Both file formats store this decomposition, and reload
rebuilds exactly the same quantized tensors, so outputs are bit-exact.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import torch

from core.errors import SparseLabError

PACKED_SUFFIX = "._packed_params._packed_params"
DTYPE_SUFFIX = "._packed_params.dtype"


@dataclass
class QuantizedWeight:
    """int8 weight: per-tensor when ``axis`` is None, else per-channel along ``axis``."""

    int_repr: np.ndarray  # int8, (out_features, in_features)
    scales: np.ndarray  # float64, (1,) or (channels,)
    zero_points: np.ndarray  # int64, same length as scales
    axis: int | None

    @classmethod
    def from_tensor(cls, weight: torch.Tensor) -> QuantizedWeight:
        if weight.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
            return cls(weight.int_repr().numpy(), np.array([weight.q_scale()], np.float64),
                       np.array([weight.q_zero_point()], np.int64), None)
        return cls(weight.int_repr().numpy(), weight.q_per_channel_scales().numpy().astype(np.float64),
                   weight.q_per_channel_zero_points().numpy().astype(np.int64), int(weight.q_per_channel_axis()))

    def to_tensor(self) -> torch.Tensor:
        int_repr = torch.from_numpy(np.ascontiguousarray(self.int_repr, dtype=np.int8))
        if self.axis is None:
            return torch._make_per_tensor_quantized_tensor(int_repr, float(self.scales[0]), int(self.zero_points[0]))
        return torch._make_per_channel_quantized_tensor(
            int_repr, torch.from_numpy(self.scales), torch.from_numpy(self.zero_points), self.axis)


@dataclass
class QuantizedLinear:
    weight: QuantizedWeight
    bias: np.ndarray | None  # float32
    output_scale: float  # the module's own scale/zero_point buffers (unused by dynamic ops, kept exact)
    output_zero_point: int


@dataclass
class QuantizedState:
    linears: dict[str, QuantizedLinear] = field(default_factory=dict)  # module name -> layer
    tensors: dict[str, np.ndarray] = field(default_factory=dict)  # every other stored tensor
    metadata: dict = field(default_factory=dict)  # the state dict's _metadata


def decompose(state_dict: dict, keep=lambda name: True, fp16=lambda name: False) -> QuantizedState:
    """Split a quantized state dict into arrays; ``keep`` filters keys, ``fp16`` marks tensors stored as fp16."""
    state = QuantizedState(metadata=dict(getattr(state_dict, "_metadata", {}) or {}))
    for name, value in state_dict.items():
        if not keep(name) or name.endswith(DTYPE_SUFFIX):
            continue
        if name.endswith(PACKED_SUFFIX):
            module = name[: -len(PACKED_SUFFIX)]
            weight, bias = value
            state.linears[module] = QuantizedLinear(
                weight=QuantizedWeight.from_tensor(weight),
                bias=None if bias is None else bias.detach().numpy().astype(np.float32),
                output_scale=float(state_dict[f"{module}.scale"]),
                output_zero_point=int(state_dict[f"{module}.zero_point"]))
        elif _is_module_qparam(name, state_dict):
            continue  # kept with its QuantizedLinear
        else:
            array = value.detach().numpy()
            state.tensors[name] = array.astype(np.float16) if fp16(name) else array
    return state


def _is_module_qparam(name: str, state_dict: dict) -> bool:
    for suffix in (".scale", ".zero_point"):
        if name.endswith(suffix) and name[: -len(suffix)] + PACKED_SUFFIX in state_dict:
            return True
    return False


def reassemble(state: QuantizedState, template: dict) -> OrderedDict:
    """The full state dict: stored entries over ``template`` (a fresh quantized model's), shape-checked."""
    result = OrderedDict(template)
    for module, layer in state.linears.items():
        key = module + PACKED_SUFFIX
        if key not in template:
            raise SparseLabError(f"The file has a quantized layer '{module}' that this model does not have.")
        expected_weight, expected_bias = template[key]
        if tuple(layer.weight.int_repr.shape) != tuple(expected_weight.shape):
            raise SparseLabError(f"Layer '{module}' is {tuple(layer.weight.int_repr.shape)} in the file but "
                                 f"{tuple(expected_weight.shape)} in the model.")
        bias = None if layer.bias is None else torch.from_numpy(np.asarray(layer.bias, np.float32))
        if (bias is None) != (expected_bias is None):
            raise SparseLabError(f"Layer '{module}' has a bias in only one of the file and the model.")
        result[key] = (layer.weight.to_tensor(), bias)
        result[f"{module}.scale"] = torch.tensor(layer.output_scale, dtype=template[f"{module}.scale"].dtype)
        result[f"{module}.zero_point"] = torch.tensor(layer.output_zero_point,
                                                      dtype=template[f"{module}.zero_point"].dtype)
    for name, array in state.tensors.items():
        if name not in template:
            raise SparseLabError(f"The file has a tensor '{name}' that this model does not have.")
        expected = template[name]
        if tuple(array.shape) != tuple(expected.shape):
            raise SparseLabError(f"Tensor '{name}' is {tuple(array.shape)} in the file but "
                                 f"{tuple(expected.shape)} in the model.")
        result[name] = torch.from_numpy(np.require(array, requirements="W")).to(expected.dtype)  # no extra copy
    result._metadata = state.metadata or getattr(template, "_metadata", {})
    return result


def load_into(quantized_model: torch.nn.Module, state: QuantizedState) -> torch.nn.Module:
    quantized_model.load_state_dict(reassemble(state, quantized_model.state_dict()))
    return quantized_model
