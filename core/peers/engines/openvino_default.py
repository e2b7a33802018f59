"""OpenVINO on the CPU plugin with its default precision: what ``compile_model(model, "CPU")`` gives a user.

The shared ONNX export read by ``ov.Core().read_model``, compiled with
``PERFORMANCE_HINT=LATENCY`` and ``INFERENCE_NUM_THREADS=threads``. The precision
is whatever the plugin chose, read back from the compiled model's
``INFERENCE_PRECISION_HINT``: bf16 on CPUs with AMX/AVX512-BF16 (this host),
f32 elsewhere, so this engine is not an fp32 engine everywhere. Measured on
bert-tiny, seq 16 (bf16): cosine with PyTorch fp32 > 0.9999, max abs error 1.3e-3.
"""

from __future__ import annotations

from core.peers.engines import Engine, Prepared


def ov_precision(compiled) -> str:
    """The precision the CPU plugin really runs at ('bf16', 'f32' ...)."""
    return compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()


class OvRunner:
    def __init__(self, path: str, threads: int, precision_hint: str | None = None, label: str = "{}"):
        import openvino as ov

        core = ov.Core()
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
        if precision_hint:
            config["INFERENCE_PRECISION_HINT"] = precision_hint
        self._compiled = core.compile_model(core.read_model(path), "CPU", config)
        self._request = self._compiled.create_infer_request()
        self.precision = label.format(ov_precision(self._compiled))

    def run(self, inputs):
        return self._request.infer(inputs, share_inputs=True)[0]


class OpenVinoDefault(Engine):
    name = "openvino-default"
    engine = "openvino"
    precision = "default"
    requires = ("openvino", "onnx")
    libraries = ("openvino", "onnx")
    order = 20

    def prepare(self, model, shape, cache) -> Prepared:
        from core.peers.onnx_export import export_onnx

        path, hit = export_onnx(model, shape, cache)
        return Prepared({"onnx": str(path)}, hit)

    def load(self, prepared, shape, threads):
        return OvRunner(prepared.artifacts["onnx"], threads)
