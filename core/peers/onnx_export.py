"""The one ONNX export every ONNX-based peer starts from, kept in the artifact cache.

``torch.onnx.export(..., dynamo=False, opset_version=17)`` (the TorchScript exporter)
at the static shape the peers are timed at: inputs ``input_ids`` and
``attention_mask`` (int64, [batch, seq_len]), one output, the model's first
(last hidden state, or a head's logits). Static shapes match what TVM compiles,
and let ORT and OpenVINO fold the shape arithmetic. The artifact is keyed on the
model's fingerprint, task, batch, seq_len, opset and the torch/transformers/onnx
versions, so ORT fp32, ORT int8, OpenVINO default and OpenVINO int8 share one
export. Measured: bert-tiny exports in 0.9 s; its ORT output matches PyTorch to
1.2e-6 (max abs).
"""

from __future__ import annotations

from pathlib import Path

from core.artifact_cache import ArtifactCache, ArtifactSpec
from core.errors import SparseLabError
from core.peers.engines import INPUT_NAMES
from core.peers.model_ref import ModelRef
from core.tvm.relax_import import InputShape

OPSET = 17
FILE = "model.onnx"
OUTPUT_NAME = "output"


def onnx_spec(model: ModelRef, shape: InputShape) -> ArtifactSpec:
    return ArtifactSpec(kind="peer-onnx",
                        inputs={"model": model.fingerprint, "task": model.task, "batch": shape.batch,
                                "seq_len": shape.seq_len, "opset": OPSET, "exporter": "torchscript"},
                        libraries=("torch", "transformers", "onnx"))


def export_onnx(model: ModelRef, shape: InputShape, cache: ArtifactCache) -> tuple[Path, bool]:
    """(path of the cached ``model.onnx``, cache hit)."""
    def build(directory: Path) -> None:
        import torch

        from core.tvm.relax_import import example_inputs, first_output

        inputs = example_inputs(shape, model.vocab_size)
        try:
            with torch.no_grad():
                torch.onnx.export(first_output(model.load_model()), tuple(inputs[n] for n in INPUT_NAMES),
                                  str(directory / FILE), dynamo=False, opset_version=OPSET,
                                  input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAME])
        except Exception as exc:  # the exporter raises many types (UnsupportedOperatorError, RuntimeError ...)
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise SparseLabError(f"ONNX export (opset {OPSET}) of {model.label} failed: {first}") from exc

    directory, hit = cache.get_or_build(onnx_spec(model, shape), build,
                                        description=f"ONNX opset {OPSET} of {model.label}, "
                                                    f"batch {shape.batch} x seq {shape.seq_len}")
    return directory / FILE, hit
