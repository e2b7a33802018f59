"""PyTorch eager, fp32: the model as ``transformers`` runs it, and every peer's accuracy reference.

``torch.set_num_threads(threads)`` and ``torch.inference_mode()``; no artifact (the
worker loads the model itself). On BERT-base, seq 128, batch 1, 2 threads it is the
slowest peer by far: 3.3x ONNX Runtime fp32's median and 15x the fastest peer (NNCF
int8) in benchmarks/peers.py, run on a host loaded 7-12x over its 2 cores, where
every absolute figure was 20-30x slower than on a quiet one.
"""

from __future__ import annotations

from core.peers.engines import Engine, Prepared


class PyTorchRunner:
    precision = "fp32"

    def __init__(self, model, threads: int):
        import torch

        from core.tvm.relax_import import forward_options

        torch.set_num_threads(threads)
        # A decoder's one full-sequence pass without building a KV cache: what TVM and the ONNX peers compute.
        self._torch, self._model, self._options = torch, model, forward_options(model)

    def run(self, inputs):
        torch = self._torch
        with torch.inference_mode():
            out = self._model(**{name: torch.from_numpy(value) for name, value in inputs.items()}, **self._options)
        return (out if isinstance(out, torch.Tensor) else out[0]).numpy()


class PyTorchEager(Engine):
    name = "pytorch"
    engine = "pytorch"
    precision = "fp32"
    requires = ("torch",)
    libraries = ("torch", "transformers")
    order = 0

    def prepare(self, model, shape, cache) -> Prepared:
        self._model = model
        return Prepared()

    def load(self, prepared, shape, threads):
        return PyTorchRunner(self._model.load_model(), threads)
