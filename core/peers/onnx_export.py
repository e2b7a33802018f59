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
# (exporter, opset), tried in order. The TorchScript exporter handles the encoders; transformers' decoders
# build their causal mask with torch.vmap, which it cannot trace ("unordered_map::at" on GPT-2), while
# torch.export (dynamo=True, opset 18, onnxscript) exports them: gpt2-tiny's ORT output matched PyTorch
# to 1.5e-6 (max abs).
EXPORTERS = (("torchscript", OPSET), ("dynamo", 18))


def onnx_spec(model: ModelRef, shape: InputShape, exporter: str = "torchscript", opset: int = OPSET) -> ArtifactSpec:
    return ArtifactSpec(kind="peer-onnx",
                        inputs={"model": model.fingerprint, "task": model.task, "batch": shape.batch,
                                "seq_len": shape.seq_len, "opset": opset, "exporter": exporter},
                        libraries=("torch", "transformers", "onnx"))


def export_onnx(model: ModelRef, shape: InputShape, cache: ArtifactCache) -> tuple[Path, bool]:
    """(path of the cached ``model.onnx``, cache hit): the first exporter of ``EXPORTERS`` that succeeds."""
    failures = []
    for exporter, opset in EXPORTERS:
        try:
            directory, hit = cache.get_or_build(
                onnx_spec(model, shape, exporter, opset), _builder(model, shape, exporter, opset),
                description=f"ONNX opset {opset} ({exporter}) of {model.label}, batch {shape.batch} x seq "
                            f"{shape.seq_len}")
            return directory / FILE, hit
        except SparseLabError as exc:
            failures.append(str(exc))
    raise SparseLabError(f"ONNX export of {model.label} failed with every exporter: {'; '.join(failures)}")


def _builder(model: ModelRef, shape: InputShape, exporter: str, opset: int):
    def build(directory: Path) -> None:
        import torch

        from core.tvm.relax_import import example_inputs, first_output

        inputs = example_inputs(shape, model.vocab_size)
        try:
            with torch.no_grad():
                torch.onnx.export(first_output(model.load_model()), tuple(inputs[n] for n in INPUT_NAMES),
                                  str(directory / FILE), dynamo=exporter == "dynamo", opset_version=opset,
                                  input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAME],
                                  **({"external_data": False} if exporter == "dynamo" else {}))
        except Exception as exc:  # the exporters raise many types (UnsupportedOperatorError, RuntimeError ...)
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise SparseLabError(f"{exporter} (opset {opset}): {first}") from exc

    return build
