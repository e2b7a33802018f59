"""The AMX bf16 batch matmul (attention in int8 builds): exact bf16 rounding, products against float64, the rewrite
that uses it, and the switch that keeps it off."""

import numpy as np
import pytest
import torch

from core.tvm import amx_bf16_matmul
from core.tvm.bsr_rewrite import RewriteOptions, bf16_attention_calls, linear_names, rewrite_linears
from core.tvm.relax_import import InputShape, import_model
from core.tvm.target import host_target
from tests.fixtures_tvm import SEQ_LEN

AMX_BF16 = pytest.mark.skipif(not amx_bf16_matmul.use_bf16(True), reason="this CPU has no AMX bf16")


def _run(a, b):
    import tvm

    batch, m, k = a.shape
    n = b.shape[-1]
    func = amx_bf16_matmul.bf16_batch_matmul(batch, m, k, n).with_attr("global_symbol", "main")
    library = tvm.compile(tvm.IRModule({"main": func}), host_target(2))
    args = [tvm.runtime.tensor(np.ascontiguousarray(x), tvm.cpu()) for x in (a, b, np.zeros((batch, m, n), "f4"))]
    library["main"](*args)
    return args[-1].numpy()


def _bf16(x):
    return torch.from_numpy(x).to(torch.bfloat16).float().numpy()


def _hard_to_round(shape, rng):
    """float32 values whose low 16 bits are exactly half a bf16 step (ties, odd and even) or just either side."""
    bits = rng.integers(0x3E000000, 0x41000000, size=shape, dtype=np.uint32) & np.uint32(0xFFFF0000)
    low = rng.choice(np.array([0x8000, 0x7FFF, 0x8001, 0x0000, 0xFFFF], np.uint32), size=shape)
    values = (bits | low).view(np.float32)
    return np.where(rng.random(shape) < 0.5, -values, values).astype(np.float32)


@AMX_BF16
def test_inputs_round_to_nearest_even_like_torch():
    rng = np.random.default_rng(0)
    a = _hard_to_round((2, 16, 32), rng)
    eye = np.broadcast_to(np.eye(32, 16, dtype=np.float32), (2, 32, 16)).copy()  # C = A[:, :, :16], exactly
    np.testing.assert_array_equal(_run(a, eye), _bf16(a)[:, :, :16])
    b = _hard_to_round((2, 32, 48), rng)
    pick = np.broadcast_to(np.eye(16, 32, dtype=np.float32), (2, 16, 32)).copy()  # C = B[:, :16, :], exactly
    np.testing.assert_array_equal(_run(pick, b), _bf16(b)[:, :16, :])


@AMX_BF16
@pytest.mark.parametrize("shape", [(3, 32, 64, 48), (2, 16, 32, 112), (12, 128, 128, 64)],
                         ids=lambda s: "x".join(map(str, s)))
def test_products_match_float64_of_the_rounded_inputs(shape):
    batch, m, k, n = shape
    rng = np.random.default_rng(1)
    a = rng.standard_normal((batch, m, k)).astype(np.float32)
    b = rng.standard_normal((batch, k, n)).astype(np.float32)
    out = _run(a, b)
    exact = np.matmul(_bf16(a).astype(np.float64), _bf16(b).astype(np.float64))
    bound = np.matmul(np.abs(_bf16(a)).astype(np.float64), np.abs(_bf16(b)).astype(np.float64))
    assert np.all(np.abs(out - exact) <= 1e-6 * bound + 1e-30)  # float32 sums of exact products
    assert np.abs(out - a @ b).max() > 0  # and the inputs really were rounded


def test_shapes_it_takes_and_tiles_per_pass():
    assert amx_bf16_matmul.supported(128, 64, 128) and amx_bf16_matmul.supported(16, 32, 16)
    assert not amx_bf16_matmul.supported(100, 64, 128) and not amx_bf16_matmul.supported(128, 16, 128)
    assert not amx_bf16_matmul.supported(128, 64, 120)
    assert [amx_bf16_matmul.c_tiles(n) for n in (16, 64, 128, 96, 112)] == [1, 4, 4, 6, 1]
    with pytest.raises(ValueError, match="multiples of 32"):
        amx_bf16_matmul.bf16_batch_matmul(1, 16, 48, 16)


def test_the_switch_follows_the_environment_and_never_outruns_the_cpu(monkeypatch):
    available = amx_bf16_matmul.use_bf16(True)
    monkeypatch.setenv(amx_bf16_matmul.ENV, "off")
    assert not amx_bf16_matmul.use_bf16() and amx_bf16_matmul.use_bf16(True) == available
    monkeypatch.delenv(amx_bf16_matmul.ENV)
    assert amx_bf16_matmul.use_bf16() == available and not amx_bf16_matmul.use_bf16(False)
    monkeypatch.setattr(amx_bf16_matmul, "cpu_has_amx_bf16", lambda: False)
    assert not amx_bf16_matmul.use_bf16(True)
    assert not RewriteOptions(block=None, precision="int8", attention_bf16=True).uses_attention_bf16


@AMX_BF16
def test_int8_builds_give_attention_scores_to_the_kernel_and_fp32_builds_do_not(tiny_model):
    def calls(**options):
        mod, _ = rewrite_linears(import_model(tiny_model, InputShape(1, SEQ_LEN)), RewriteOptions(**options),
                                 linear_names(tiny_model))
        return bf16_attention_calls(mod)

    layers = tiny_model.config.num_hidden_layers
    # Q K^T per layer: 16 tokens x 64 head dims; P V reduces over 16 tokens, under the kernel's 32: stays fp32
    assert calls(block=None, precision="int8", attention_bf16=True) == layers
    assert calls(block=None, precision="int8", attention_bf16=False) == 0
    assert calls(block=None, precision="fp32", attention_bf16=True) == 0
