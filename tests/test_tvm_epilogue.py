"""Bias, GELU and residual folded into the dense kernels (core.tvm.epilogue): the kernels against numpy, which
chains the Relax pass fuses, which it leaves alone, and a compiled model against PyTorch."""

import numpy as np
import pytest
import torch

from core.tvm import dense_kernel
from core.tvm.bsr_rewrite import RewriteOptions, linear_names, rewrite_linears
from core.tvm.epilogue import Epilogue
from core.tvm.relax_import import InputShape, import_model
from core.tvm.target import host_target
from tests.fixtures_tvm import SEQ_LEN, with_epilogue

M, K, N = 32, 64, 96


@pytest.mark.slow  # compiles with TVM
@pytest.mark.parametrize("epilogue", [Epilogue(bias=True), Epilogue(bias=True, gelu=True),
                                      Epilogue(bias=True, residual=True), Epilogue(gelu=True, residual=True)],
                         ids=lambda e: e.suffix)
def test_dense_kernel_applies_its_epilogue(epilogue):
    import tvm

    rng = np.random.default_rng(5)
    x = rng.standard_normal((M, K)).astype(np.float32)
    weight = (rng.standard_normal((N, K)) / 8).astype(np.float32)
    bias = rng.standard_normal(N).astype(np.float32)
    residual = rng.standard_normal((M, N)).astype(np.float32)
    schedule = dense_kernel.default_schedule(M, N)
    func = dense_kernel.dense_matmul(M, K, N, schedule, epilogue).with_attr("global_symbol", "main")
    kernel = tvm.compile(tvm.IRModule({"main": func}), target=host_target(2))["main"]
    arrays = [x, dense_kernel.pack_weight(weight, schedule.lanes)] + [bias] * epilogue.bias \
        + [residual] * epilogue.residual
    device = tvm.cpu()
    out = tvm.runtime.tensor(np.zeros((M, N), np.float32), device)
    kernel(*[tvm.runtime.tensor(a, device) for a in arrays], out)

    expected = with_epilogue(x.astype(np.float64) @ weight.T.astype(np.float64), epilogue, bias, residual)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=2e-5)


def _fused_calls(model, options=RewriteOptions(block=None)):
    mod, _ = rewrite_linears(import_model(model, InputShape(1, SEQ_LEN)), options, linear_names(model))
    script = mod["main"].script()
    return mod, {suffix: script.count(f"{suffix},") for suffix in ("_bias", "_bias_gelu", "_bias_residual")}


def test_every_bert_linear_takes_its_bias_gelu_and_residual(tiny_model):
    layers = tiny_model.config.num_hidden_layers
    mod, calls = _fused_calls(tiny_model)
    # Q, K, V: bias (their head split follows); FFN in: bias + GELU; attention out, FFN out: bias + residual
    assert calls == {"_bias": 3 * layers, "_bias_gelu": layers, "_bias_residual": 2 * layers}
    script = mod["main"].script()
    assert "R.nn.gelu(" not in script
    # the plain kernels are gone with the calls they served
    assert not [gv.name_hint for gv in mod.get_global_vars() if gv.name_hint.startswith("dense_")
                and not gv.name_hint.endswith(("_bias", "_gelu", "_residual"))]


def test_int8_dense_kernels_take_bias_gelu_and_residual(tiny_model):
    layers = tiny_model.config.num_hidden_layers
    mod, calls = _fused_calls(tiny_model, RewriteOptions(block=None, precision="int8", amx=False))
    assert calls == {"_bias": 3 * layers, "_bias_gelu": layers, "_bias_residual": 2 * layers}
    assert "R.nn.gelu(" not in mod["main"].script()


@pytest.mark.skipif(not __import__("core.tvm.amx_bsr_kernel", fromlist=["use_amx"]).use_amx(),
                    reason="this CPU has no AMX int8: the rewrite picks the VNNI kernels")
@pytest.mark.parametrize("block", [None, (16, 4)], ids=["dense", "bsr-16x4"])
def test_amx_kernels_take_bias_gelu_and_residual(tiny_model, block):
    from core.pruning.apply import PruneConfig, prune_model

    if block:
        prune_model(tiny_model, PruneConfig(method="random", sparsity=0.9, block=block))
    layers = tiny_model.config.num_hidden_layers
    mod, calls = _fused_calls(tiny_model, RewriteOptions(block=block, precision="int8", amx=True))
    assert calls == {"_bias": 3 * layers, "_bias_gelu": layers, "_bias_residual": 2 * layers}
    kind = "bsr_amx" if block else "dense_amx"
    names = [gv.name_hint for gv in mod.get_global_vars()]
    for suffix in ("_bias_gelu", "_bias_residual"):
        assert any(name.startswith(kind) and name.endswith(suffix) for name in names), names


def test_epilogues_off_keeps_the_separate_passes(tiny_model):
    mod, calls = _fused_calls(tiny_model, RewriteOptions(block=None, epilogues=False))
    assert calls == {"_bias": 0, "_bias_gelu": 0, "_bias_residual": 0}
    assert "R.nn.gelu(" in mod["main"].script()


class _SharedOutput(torch.nn.Module):
    """A Linear whose biased output is used twice: GELU and the residual cannot fold, the bias can."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.config = type("Config", (), {"vocab_size": 50})()
        self.embed = torch.nn.Embedding(50, 32)
        self.linear = torch.nn.Linear(32, 32)

    def forward(self, input_ids, attention_mask):
        y = self.linear(self.embed(input_ids))
        return (torch.nn.functional.gelu(y) + y,)


def test_a_value_used_twice_is_not_folded_away():
    model = _SharedOutput().eval()
    mod, calls = _fused_calls(model)
    assert calls == {"_bias": 1, "_bias_gelu": 0, "_bias_residual": 0}
    assert "R.nn.gelu(" in mod["main"].script()
