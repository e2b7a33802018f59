"""What storing a model this way buys: the size waterfall, the fidelity kept, and int8 vs fp32 speed.

Sizes are measured, never estimated: torch.save into memory for the torch
steps, raw array bytes for uncompressed CSR, real files for both HDF5 formats.
Fidelity compares the quantized model's sentence embeddings with the pruned
fp32 model's and, when the folder says which dense model it was pruned from,
with that dense model's.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import scipy.sparse
import torch

from core.fidelity import fidelity, model_outputs, pair_sentences, sentence_pairs
from core.model_source import ModelSource, resolve
from core.pruning.save import SUMMARY_FILE
from core.storage.quantization import prepare_for_storage
from core.storage.store import FORMATS, StoreConfig, format_sizes, stored_state, stored_torch_size
from core.timing import measure


@dataclass(frozen=True)
class SizeStep:
    label: str
    size_bytes: int


def csr_bytes(state) -> int:
    """Uncompressed bytes of the stored state with int8 weights as CSR (uint16 indices, int32 indptr)."""
    total = sum(array.nbytes for array in state.tensors.values())
    for layer in state.linears.values():
        csr = scipy.sparse.csr_matrix(layer.weight.int_repr)
        total += csr.data.nbytes + csr.indices.size * 2 + csr.indptr.size * 4
        total += layer.weight.scales.nbytes + (layer.bias.nbytes if layer.bias is not None else 0)
    return total


def size_waterfall(model: torch.nn.Module, config: StoreConfig, source_name: str) -> list[SizeStep]:
    quantized = prepare_for_storage(model, config.per_channel, config.embeddings)
    state = stored_state(quantized, config)
    files = format_sizes(state, config, source_name)
    return [
        SizeStep("fp32, pruned weights still dense (torch.save)", stored_torch_size(model, config)),
        SizeStep("int8 (torch.save)", stored_torch_size(quantized, config)),
        SizeStep("int8 as CSR, uncompressed", csr_bytes(state)),
        *(SizeStep(f"HDF5 gzip, {name} format", size) for name, size in files.items()),
    ]


def dense_origin(source: ModelSource) -> ModelSource | None:
    """The dense model a pruned folder was made from, if its pruning.json names one that loads here."""
    if source.kind != "local":
        return None
    summary_path = Path(source.location) / SUMMARY_FILE
    if not summary_path.is_file():
        return None
    name = json.loads(summary_path.read_text()).get("model")
    return resolve(name) if name else None


def storage_report(source: ModelSource, config: StoreConfig, threads: int, progress=lambda f, m: None) -> dict:
    """Waterfalls without and with embeddings, fidelity of int8 vs fp32 (and dense), and int8 vs fp32 latency."""
    model = source.load_model(config.task)
    progress(0.1, "measuring sizes")
    waterfalls = {emb: [asdict(s) for s in size_waterfall(model, replace(config, embeddings=emb), source.name)]
                  for emb in ("none", config.embeddings if config.embeddings != "none" else "fp32")}
    quantized = prepare_for_storage(model, config.per_channel, config.embeddings)
    progress(0.5, "scoring fidelity")
    tokenizer = source.load_tokenizer()
    sentences = pair_sentences(sentence_pairs())
    int8_outputs = model_outputs(quantized, tokenizer, sentences)
    scores = {"vs_pruned_fp32": fidelity(model_outputs(model, tokenizer, sentences), int8_outputs).as_dict()}
    origin = dense_origin(source)
    if origin is not None:
        dense = origin.load_model(config.task)
        scores["vs_dense"] = fidelity(model_outputs(dense, tokenizer, sentences), int8_outputs).as_dict()
    progress(0.75, "timing int8 and fp32")
    inputs = tokenizer(["sparse " * 126], return_tensors="pt", truncation=True, max_length=128, padding="max_length")
    latency = {}
    for label, candidate in (("fp32", model), ("int8", quantized)):
        with torch.no_grad():
            latency[label] = measure(lambda: candidate(**inputs), threads=threads, repeats=20, warmup=3).as_dict()
    return {"waterfalls": waterfalls, "fidelity": scores, "latency": latency, "formats": list(FORMATS),
            "dense_origin": origin.name if origin else None}
