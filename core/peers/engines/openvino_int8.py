"""OpenVINO with NNCF post-training int8 quantization (static: calibrated activation ranges).

``nncf.quantize(model, nncf.Dataset(samples), model_type=TRANSFORMER, subset_size=32)``
on the shared ONNX export read by OpenVINO. The 32 calibration samples are real
sentences (core/fidelity.py's pairs, tokenized to the timed shape) when the
model has a tokenizer, else seeded random token ids (config architectures have
random weights, so text means nothing to them). The quantized IR is saved with
``compress_to_fp16=False`` (only NNCF's quantization changes the weights) and
cached, keyed on the export, the calibration set and the openvino/nncf versions.
It is compiled like the default engine; ops NNCF leaves unquantized run at the
plugin's default precision, reported as e.g. ``int8+bf16``. Measured on
bert-tiny, seq 16: cosine with PyTorch fp32 0.99999, max abs error 0.026;
quantizing takes 1.4 s. On the trained MiniLM (seq 64, calibrated on sentences):
sentence-embedding cosine 0.995 (worst 0.940), paraphrase retrieval 1.0.
"""

from __future__ import annotations

from core.artifact_cache import ArtifactSpec
from core.peers.engines import Engine, Prepared
from core.peers.engines.openvino_default import OvRunner
from core.peers.inputs import CALIBRATION_SAMPLES

FILE = "model.xml"


class OpenVinoInt8(Engine):
    name = "openvino-int8"
    engine = "openvino"
    precision = "int8"
    requires = ("openvino", "nncf", "onnx")
    libraries = ("openvino", "nncf", "onnx")
    order = 22

    def prepare(self, model, shape, cache) -> Prepared:
        from core.peers.inputs import calibration_samples
        from core.peers.onnx_export import export_onnx, onnx_spec

        calibration = "sentence pairs" if model.has_tokenizer else "random token ids"

        def build(directory):
            import nncf
            import openvino as ov

            source, _ = export_onnx(model, shape, cache)  # only when the int8 model is not cached yet
            samples, _ = calibration_samples(model, shape)
            quantized = nncf.quantize(ov.Core().read_model(str(source)), nncf.Dataset(samples),
                                      model_type=nncf.ModelType.TRANSFORMER, subset_size=len(samples))
            ov.save_model(quantized, str(directory / FILE), compress_to_fp16=False)

        spec = ArtifactSpec(kind="peer-ov-int8",
                            inputs={"onnx": onnx_spec(model, shape).key, "calibration": calibration,
                                    "samples": CALIBRATION_SAMPLES, "model_type": "transformer"},
                            libraries=self.libraries)
        directory, hit = cache.get_or_build(spec, build, description=f"NNCF int8 of {model.label} "
                                                                     f"(calibrated on {calibration})")
        return Prepared({"ir": str(directory / FILE)}, hit)

    def load(self, prepared, shape, threads):
        return OvRunner(prepared.artifacts["ir"], threads, label="int8+{}")
