"""OpenVINO on the CPU plugin forced to f32 (``INFERENCE_PRECISION_HINT=f32``).

The default engine runs bf16 on CPUs that have it; this one shows what OpenVINO
does at the same precision as PyTorch and ORT fp32, so a bf16 gain is not
mistaken for a better fp32 engine.
"""

from __future__ import annotations

from core.peers.engines.openvino_default import OpenVinoDefault, OvRunner


class OpenVinoFp32(OpenVinoDefault):
    name = "openvino-fp32"
    precision = "fp32"
    order = 21

    def load(self, prepared, shape, threads):
        return OvRunner(prepared.artifacts["onnx"], threads, precision_hint="f32")

