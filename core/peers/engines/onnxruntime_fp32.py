"""ONNX Runtime, fp32, CPU execution provider: the dense engine most deployments would reach for.

The shared ONNX export (core/peers/onnx_export.py) with every graph optimisation
on (``ORT_ENABLE_ALL``, which fuses BERT's attention and LayerNorm), one session,
``intra_op_num_threads=threads`` and one inter-op thread. Measured on bert-tiny:
max abs difference from PyTorch 1.2e-6.
"""

from __future__ import annotations

from core.peers.engines import Engine, Prepared


class OrtRunner:
    def __init__(self, path: str, threads: int, precision: str):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self._output = self._session.get_outputs()[0].name
        self.precision = precision

    def run(self, inputs):
        return self._session.run([self._output], inputs)[0]


class OnnxRuntimeFp32(Engine):
    name = "onnxruntime-fp32"
    engine = "onnxruntime"
    precision = "fp32"
    requires = ("onnxruntime", "onnx")
    libraries = ("onnxruntime", "onnx")
    order = 10

    def prepare(self, model, shape, cache) -> Prepared:
        from core.peers.onnx_export import export_onnx

        path, hit = export_onnx(model, shape, cache)
        return Prepared({"onnx": str(path)}, hit)

    def load(self, prepared, shape, threads):
        return OrtRunner(prepared.artifacts["onnx"], threads, self.precision)
