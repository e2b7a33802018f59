"""ONNX Runtime with dynamic int8 quantization: int8 weights, activations quantized per call.

``onnxruntime.quantization.quantize_dynamic(weight_type=QInt8)`` of the shared
ONNX export, cached as its own artifact (keyed on the export's key and the
onnxruntime/onnx versions); run like the fp32 engine. No calibration data: the
activation ranges are measured on every call. Measured on bert-tiny, seq 16:
cosine with PyTorch fp32 0.99996, max abs error 0.027; quantizing takes 0.3 s. On the
trained MiniLM (seq 64) it costs more: sentence-embedding cosine 0.966 (worst 0.943),
though paraphrase retrieval stays at 1.0; NNCF's static int8 keeps 0.995 there.
"""

from __future__ import annotations

from core.artifact_cache import ArtifactSpec
from core.peers.engines import Engine, Prepared
from core.peers.engines.onnxruntime_fp32 import OrtRunner

FILE = "model.int8.onnx"


class OnnxRuntimeInt8(Engine):
    name = "onnxruntime-int8"
    engine = "onnxruntime"
    precision = "int8"
    requires = ("onnxruntime", "onnx")
    libraries = ("onnxruntime", "onnx")
    order = 11

    def prepare(self, model, shape, cache) -> Prepared:
        from core.peers.onnx_export import export_onnx, onnx_spec

        def build(directory):
            from onnxruntime.quantization import QuantType, quantize_dynamic

            source, _ = export_onnx(model, shape, cache)  # only when the int8 model is not cached yet
            quantize_dynamic(str(source), str(directory / FILE), weight_type=QuantType.QInt8)

        spec = ArtifactSpec(kind="peer-ort-int8", inputs={"onnx": onnx_spec(model, shape).key,
                                                          "weight_type": "QInt8", "method": "dynamic"},
                            libraries=self.libraries)
        directory, hit = cache.get_or_build(spec, build, description=f"ORT dynamic int8 of {model.label}")
        return Prepared({"int8": str(directory / FILE)}, hit)

    def load(self, prepared, shape, threads):
        return OrtRunner(prepared.artifacts["int8"], threads, self.precision)
