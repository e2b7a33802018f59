"""int8 dynamic quantization of Linear layers, the PruneBERT way.

``torch.ao.quantization.quantize_dynamic`` is deprecated but it is the fast int8
path on x86 CPUs (fbgemm); torchao's int8 path is about 250x slower here.
Per-tensor scales are what the Saving-PruneBERT notebook used; per-channel scales
keep far more fidelity on small models such as MiniLM.
"""

from __future__ import annotations

import warnings

import torch

from core.errors import SparseLabError

EMBEDDING_CHOICES = ("none", "fp32", "fp16")


def quantize_linear_layers(model: torch.nn.Module, per_channel: bool = False) -> torch.nn.Module:
    """A quantized copy of ``model``: every Linear becomes an int8 dynamic Linear."""
    qconfig = (torch.ao.quantization.per_channel_dynamic_qconfig if per_channel
               else torch.ao.quantization.default_dynamic_qconfig)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the deprecation notice of quantize_dynamic
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear: qconfig},
                                                      dtype=torch.qint8).eval()


def is_embedding_key(name: str) -> bool:
    return name.startswith("embeddings.") or ".embeddings." in name


def round_embeddings_to_fp16(model: torch.nn.Module) -> None:
    """Round embedding weights to fp16 values in place: the lossy step is taken before saving,
    so that saving and reloading stay bit-exact."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if is_embedding_key(name):
                param.copy_(param.half().float())


def prepare_for_storage(model: torch.nn.Module, per_channel: bool, embeddings: str) -> torch.nn.Module:
    """The quantized model a file will hold, exactly: what reload must reproduce bit for bit."""
    if embeddings not in EMBEDDING_CHOICES:
        raise SparseLabError(f"embeddings must be one of {', '.join(EMBEDDING_CHOICES)}, not '{embeddings}'.")
    quantized = quantize_linear_layers(model, per_channel=per_channel)
    if embeddings == "fp16":
        round_embeddings_to_fp16(quantized)
    return quantized
