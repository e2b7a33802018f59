"""The AMX int8 BSR kernel against the exact integer reference (on CPUs with AMX), and its packing everywhere."""

import numpy as np
import pytest

from core.tvm import amx_bsr_kernel, int8_bsr_kernel, int8_dense_kernel, quantize
from core.tvm.epilogue import Epilogue
from core.tvm.target import host_target
from tests.fixtures_tvm import random_block_sparse, with_epilogue

AMX = pytest.mark.skipif(not amx_bsr_kernel.use_amx(), reason="this CPU has no AMX int8 (or Linux refused tiles)")


def _tensors(*arrays):
    import tvm

    return [tvm.runtime.tensor(np.ascontiguousarray(a), tvm.cpu()) for a in arrays]


def _sparse(n, k, block, sparsity, seed):
    weight = random_block_sparse((n, k), sparsity, block, seed=seed)
    weight[: block[0]] = 0.0  # an empty block row
    return weight, int8_bsr_kernel.to_int8_bsr(weight, block)


@pytest.mark.parametrize("block", [(16, 4), (32, 4)], ids=lambda b: f"{b[0]}x{b[1]}")
def test_packing_keeps_every_block_in_place(block):
    n, k = 64, 256
    weight, sparse = _sparse(n, k, block, 0.7, seed=1)
    packed = amx_bsr_kernel.pack(sparse)
    qweight = sparse.to_dense().astype(np.int32)
    rebuilt = np.zeros_like(qweight)
    for s in range(n // 16):  # 16 output rows per slice; slot b of chunk c holds inputs 4*cols[c, b] .. +3
        for c in range(packed.chunk_ptr[s], packed.chunk_ptr[s + 1]):
            tile = packed.apack[c].reshape(16, 16, 4)
            for b in range(16):
                rebuilt[s * 16:(s + 1) * 16, 4 * packed.cols[c, b]:4 * packed.cols[c, b] + 4] += tile[:, b, :]
    np.testing.assert_array_equal(rebuilt, qweight)
    assert packed.chunk_ptr[1] == packed.chunk_ptr[0] == 0  # the empty first block row has no chunk
    counts = np.diff(sparse.indptr)
    assert packed.chunks == int(np.sum(-(-counts // 16))) * (block[0] // 16)


def test_refuses_blocks_it_cannot_take():
    _, sparse = _sparse(32, 64, (4, 4), 0.5, seed=2)
    with pytest.raises(ValueError, match="16\\*k rows x 4 columns"):
        amx_bsr_kernel.pack(sparse)
    assert not amx_bsr_kernel.supported_block((8, 4)) and amx_bsr_kernel.supported_block((32, 4))


def test_amx_choice_follows_the_environment_and_never_outruns_the_cpu(monkeypatch):
    available = amx_bsr_kernel.cpu_has_amx() and amx_bsr_kernel.enable_amx()
    monkeypatch.setenv(amx_bsr_kernel.AMX_ENV, "0")
    assert not amx_bsr_kernel.use_amx() and not amx_bsr_kernel.applies((16, 4))
    assert amx_bsr_kernel.use_amx(True) == available  # an explicit choice beats the variable
    monkeypatch.delenv(amx_bsr_kernel.AMX_ENV)
    assert amx_bsr_kernel.use_amx() == available and not amx_bsr_kernel.use_amx(False)
    monkeypatch.setattr(amx_bsr_kernel, "cpu_has_amx", lambda: False)  # a CPU without AMX: asked or not
    assert not amx_bsr_kernel.use_amx(True) and not amx_bsr_kernel.dense_applies(768, 768, True)


@AMX
@pytest.mark.slow  # builds with LLVM
@pytest.mark.parametrize("m, k, n, block, sparsity", [(32, 256, 96, (16, 4), 0.8), (48, 128, 64, (32, 4), 0.5),
                                                      (16, 768, 32, (16, 4), 0.9), (64, 256, 96, (16, 4), 0.8)])
@pytest.mark.parametrize("by_tokens", [False, True], ids=["slices", "tokens"])
def test_amx_kernel_is_exact(m, k, n, block, sparsity, by_tokens):
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((m, k)) * 2).astype(np.float32)
    u8, x_params = quantize.quantize_activation(x)
    weight, sparse = _sparse(n, k, block, sparsity, seed=3)
    qweight, w_scale = quantize.quantize_weight(weight)
    packed = amx_bsr_kernel.pack(sparse)
    xp = quantize.pack_activation(u8, m)
    target = host_target(2)
    exact = int8_dense_kernel.build(amx_bsr_kernel.amx_bsr_matmul(m, k, n, dequantize=False, by_tokens=by_tokens),
                                    target)
    acc, = _tensors(np.zeros((m, n), np.int32))
    exact(*_tensors(xp, packed.apack, packed.cols, packed.chunk_ptr), acc)
    reference = quantize.integer_matmul(u8, qweight)
    np.testing.assert_array_equal(acc.numpy(), reference)
    kernel = int8_dense_kernel.build(amx_bsr_kernel.amx_bsr_matmul(m, k, n, by_tokens=by_tokens), target)
    y, = _tensors(np.zeros((m, n), np.float32))
    kernel(*_tensors(xp, quantize.padded_params(x_params, m), packed.apack, packed.cols, packed.chunk_ptr, packed.scale,
                     packed.sums), y)
    expected = quantize.dequantize(reference, x_params, w_scale, sparse.sums)
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-6, atol=1e-6)


def test_dense_packing_puts_each_tile_in_place():
    qweight = np.random.default_rng(6).integers(-127, 128, (32, 128)).astype(np.int8)
    apack = amx_bsr_kernel.pack_dense(qweight)
    assert apack.shape == (2 * 2, 16, 64)
    np.testing.assert_array_equal(apack[1 * 2 + 1], qweight[16:32, 64:128])  # slice 1, chunk 1
    assert amx_bsr_kernel.dense_supported(768, 3072) and not amx_bsr_kernel.dense_supported(96, 32)


@AMX
@pytest.mark.slow  # builds with LLVM
@pytest.mark.parametrize("m, k, n", [(32, 128, 48), (48, 256, 16), (128, 768, 64)])
@pytest.mark.parametrize("by_tokens", [False, True], ids=["slices", "tokens"])
def test_amx_dense_kernel_is_exact(m, k, n, by_tokens):
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((m, k)) * 2).astype(np.float32)
    u8, x_params = quantize.quantize_activation(x)
    qweight, w_scale = quantize.quantize_weight(rng.standard_normal((n, k)).astype(np.float32))
    sums = quantize.weight_sums(qweight)
    apack, xp = amx_bsr_kernel.pack_dense(qweight), quantize.pack_activation(u8, m)
    target = host_target(2)
    exact = int8_dense_kernel.build(amx_bsr_kernel.amx_dense_matmul(m, k, n, dequantize=False, by_tokens=by_tokens),
                                    target)
    acc, = _tensors(np.zeros((m, n), np.int32))
    exact(*_tensors(xp, apack), acc)
    reference = quantize.integer_matmul(u8, qweight)
    np.testing.assert_array_equal(acc.numpy(), reference)
    kernel = int8_dense_kernel.build(amx_bsr_kernel.amx_dense_matmul(m, k, n, by_tokens=by_tokens), target)
    y, = _tensors(np.zeros((m, n), np.float32))
    kernel(*_tensors(xp, quantize.padded_params(x_params, m), apack, w_scale, sums), y)
    np.testing.assert_allclose(y.numpy(), quantize.dequantize(reference, x_params, w_scale, sums),
                               rtol=1e-6, atol=1e-6)


@AMX
@pytest.mark.slow  # builds with LLVM
@pytest.mark.parametrize("dense", [False, True], ids=["bsr", "dense"])
@pytest.mark.parametrize("chosen", [Epilogue(bias=True), Epilogue(bias=True, gelu=True),
                                    Epilogue(bias=True, residual=True)], ids=lambda e: e.suffix)
def test_amx_epilogue_applies_to_the_dequantised_output(dense, chosen):
    m, k, n = 32, 128, 48
    rng = np.random.default_rng(8)
    x = (rng.standard_normal((m, k)) * 2).astype(np.float32)
    u8, x_params = quantize.quantize_activation(x)
    bias = rng.standard_normal(n).astype(np.float32)
    rest = rng.standard_normal((m, n)).astype(np.float32)
    if dense:
        qweight, w_scale = quantize.quantize_weight(rng.standard_normal((n, k)).astype(np.float32))
        sums = quantize.weight_sums(qweight)
        func = amx_bsr_kernel.amx_dense_matmul(m, k, n, epilogue=chosen)
        weights = [amx_bsr_kernel.pack_dense(qweight), w_scale, sums]
    else:
        weight, sparse = _sparse(n, k, (16, 4), 0.7, seed=9)
        qweight, w_scale = quantize.quantize_weight(weight)
        sums = sparse.sums
        packed = amx_bsr_kernel.pack(sparse)
        func = amx_bsr_kernel.amx_bsr_matmul(m, k, n, epilogue=chosen)
        weights = [packed.apack, packed.cols, packed.chunk_ptr, packed.scale, packed.sums]
    kernel = int8_dense_kernel.build(func, host_target(2))
    y, = _tensors(np.zeros((m, n), np.float32))
    extra = [bias] + [rest] * chosen.residual
    kernel(*_tensors(quantize.pack_activation(u8, m), quantize.padded_params(x_params, m), *weights, *extra), y)
    dequantized = quantize.dequantize(quantize.integer_matmul(u8, qweight), x_params, w_scale, sums)
    np.testing.assert_allclose(y.numpy(), with_epilogue(dequantized, chosen, bias, rest), rtol=1e-5, atol=2e-5)


def test_the_split_follows_the_token_passes():
    assert not amx_bsr_kernel.split_by_tokens(32) and not amx_bsr_kernel.split_by_tokens(48)  # one pass
    assert amx_bsr_kernel.split_by_tokens(64) and amx_bsr_kernel.split_by_tokens(128)  # 2 and 4 passes of 32
    assert amx_bsr_kernel.default_schedule(128).label == "int8-amx/32/by-tokens"
    assert amx_bsr_kernel.dense_schedule(48).label == "int8-amx-dense/48"
    assert amx_bsr_kernel.dense_schedule(128).label == "int8-amx-dense/32"  # dense: by weight slices


def test_amx_kernels_refuse_an_epilogue_on_raw_sums():
    for make in (amx_bsr_kernel.amx_bsr_matmul, amx_bsr_kernel.amx_dense_matmul):
        with pytest.raises(ValueError, match="AMX kernel applies an epilogue"):
            make(32, 128, 48, dequantize=False, epilogue=Epilogue(bias=True, gelu=True))
