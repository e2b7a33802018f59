"""The int8 kernels (VNNI and the forced int32 fallback) against an exact integer numpy reference."""

import numpy as np
import pytest

from core.tvm import int8_bsr_kernel, int8_dense_kernel, quantize
from core.tvm.epilogue import Epilogue
from core.tvm.target import host_target
from tests.fixtures_tvm import random_block_sparse, with_epilogue

M, K, N = 32, 64, 96
BLOCKS = [(16, 4), (4, 4), (1, 4), (32, 4), (2, 4), (8, 4)]
VNNI = [pytest.param(True, id="vnni", marks=pytest.mark.skipif(not int8_dense_kernel.cpu_has_vnni(),
                                                              reason="this CPU has no AVX-512 VNNI")),
        pytest.param(False, id="fallback")]


def _tensors(*arrays):
    import tvm

    return [tvm.runtime.tensor(np.ascontiguousarray(a), tvm.cpu()) for a in arrays]


def _activation(m=M, k=K, seed=0):
    """Tokens whose magnitudes differ 40-fold (so per-token scales matter), one all-zero token and one all
    positive (zero point 0: the GELU outputs a second FFN Linear reads look like that)."""
    x = (np.random.default_rng(seed).standard_normal((m, k)) * np.linspace(0.1, 4, m)[:, None]).astype(np.float32)
    x[m // 2] = 0.0
    x[m // 3] = np.abs(x[m // 3]) + 0.5
    u8, scale = quantize.quantize_activation(x)
    return x, u8, scale


def test_quantisation_math():
    weight = np.array([[0.5, -1.0, 0.25, 0.0], [0.0, 0.0, 0.0, 0.0]], np.float32)
    q, scale = quantize.quantize_weight(weight)
    assert q.tolist() == [[64, -127, 32, 0], [0, 0, 0, 0]]
    assert scale.tolist() == [np.float32(1) / np.float32(127), 1]
    assert quantize.weight_sums(q).tolist() == [64 - 127 + 32, 0]
    x = np.array([[-1.0, 0.5, 0.0, 3.0], [0.5, 0.0, 0.0, -0.25], [3.0, 1.0, 0.0, 0.0], [0.0] * 4], np.float32)
    u8, params = quantize.quantize_activation(x)
    # each token on its own range: [-1, 3] -> zero point 64; [-0.25, 0.5] -> 85; [0, 3] -> 0 (all 256 levels)
    assert u8.tolist() == [[0, 96, 64, 255], [255, 85, 85, 0], [255, 85, 0, 0], [0] * 4]
    assert params[0].tolist() == [np.float32(4.0) / np.float32(255), np.float32(0.75) / np.float32(255),
                                  np.float32(3.0) / np.float32(255), 1.0]
    assert params[1].tolist() == [64.0, 85.0, 0.0, 0.0]
    padded = quantize.padded_params(params, 16)
    assert padded[0].tolist() == params[0].tolist() + [1.0] * 12 and padded[1].tolist() == [64, 85, 0] + [0] * 13
    x = np.random.default_rng(1).standard_normal((8, 16)).astype(np.float32)
    w = np.random.default_rng(2).standard_normal((12, 16)).astype(np.float32)
    y = quantize.int8_linear(x, w)
    cosine = (y * (x @ w.T)).sum() / np.linalg.norm(y) / np.linalg.norm(x @ w.T)
    assert cosine > 0.999


@pytest.mark.slow  # every kernel test builds with LLVM: ~30 s in all
@pytest.mark.parametrize("m, k", [(12, 64), (32, 96), (20, 768), (12, 8), (16, 4), (20, 24)])
def test_activation_kernel_is_bit_exact(m, k):
    x, u8, scale = _activation(m, k)
    tokens = quantize.padded_tokens(m)
    xp, out_params = _tensors(np.zeros((k // 4, tokens, 4), np.uint8), np.zeros((2, tokens), np.float32))
    int8_dense_kernel.build(quantize.quantize_activation_kernel(m, k, tokens), host_target(2))(*_tensors(x), xp,
                                                                                                 out_params)
    np.testing.assert_array_equal(out_params.numpy(), quantize.padded_params(scale, tokens))
    np.testing.assert_array_equal(xp.numpy(), quantize.pack_activation(u8, tokens))


@pytest.mark.slow
@pytest.mark.parametrize("vnni", VNNI)
@pytest.mark.parametrize("tile, panels", [(8, 1), (4, 2), (8, 2)])
def test_dense_int8_kernel(vnni, tile, panels):
    x, u8, x_params = _activation()
    weight = np.random.default_rng(3).standard_normal((N, K)).astype(np.float32)
    qweight, w_scale = quantize.quantize_weight(weight)
    packed = int8_dense_kernel.prepare_weight(weight)
    xp = quantize.pack_activation(u8, M)
    schedule = int8_dense_kernel.Int8DenseSchedule(tile, panels, vnni)
    target = host_target(2)
    exact = int8_dense_kernel.build(int8_dense_kernel.dense_int8_matmul(M, K, N, schedule, dequantize=False), target)
    acc, = _tensors(np.zeros((M, N), np.int32))
    exact(*_tensors(xp, packed.packed), acc)
    reference = quantize.integer_matmul(u8, qweight)
    np.testing.assert_array_equal(acc.numpy(), reference)
    kernel = int8_dense_kernel.build(int8_dense_kernel.dense_int8_matmul(M, K, N, schedule), target)
    y, = _tensors(np.zeros((M, N), np.float32))
    kernel(*_tensors(xp, quantize.padded_params(x_params, M), packed.packed, packed.scale, packed.sums), y)
    expected = quantize.dequantize(reference, x_params, w_scale, packed.sums)
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-6, atol=1e-6)
    exact_float = x @ weight.T  # quantisation error only
    assert (y.numpy() * exact_float).sum() / np.linalg.norm(y.numpy()) / np.linalg.norm(exact_float) > 0.999


EPILOGUES = [Epilogue(bias=True), Epilogue(bias=True, gelu=True), Epilogue(bias=True, residual=True),
             Epilogue(gelu=True, residual=True)]


@pytest.mark.slow
@pytest.mark.parametrize("vnni", VNNI)
@pytest.mark.parametrize("epilogue", EPILOGUES, ids=lambda e: e.suffix)
def test_dense_int8_kernel_applies_its_epilogue(vnni, epilogue):
    _, u8, x_params = _activation()
    rng = np.random.default_rng(6)
    weight = rng.standard_normal((N, K)).astype(np.float32)
    bias, residual = rng.standard_normal(N).astype(np.float32), rng.standard_normal((M, N)).astype(np.float32)
    packed = int8_dense_kernel.prepare_weight(weight)
    schedule = int8_dense_kernel.default_schedule(M, N, vnni)
    kernel = int8_dense_kernel.build(int8_dense_kernel.dense_int8_matmul(M, K, N, schedule, epilogue=epilogue),
                                     host_target(2))
    y, = _tensors(np.zeros((M, N), np.float32))
    extra = [bias] * epilogue.bias + [residual] * epilogue.residual
    kernel(*_tensors(quantize.pack_activation(u8, M), quantize.padded_params(x_params, M), packed.packed, packed.scale,
                     packed.sums, *extra), y)
    qweight, w_scale = quantize.quantize_weight(weight)
    dequantized = quantize.dequantize(quantize.integer_matmul(u8, qweight), x_params, w_scale, packed.sums)
    np.testing.assert_allclose(y.numpy(), with_epilogue(dequantized, epilogue, bias, residual), rtol=1e-5, atol=2e-5)


def test_dense_int8_kernel_refuses_an_epilogue_on_raw_sums():
    with pytest.raises(ValueError, match="dequantised output only"):
        int8_dense_kernel.dense_int8_matmul(M, K, N, int8_dense_kernel.default_schedule(M, N, False),
                                            dequantize=False, epilogue=Epilogue(bias=True))


@pytest.mark.slow
@pytest.mark.parametrize("vnni", VNNI)
@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: f"{b[0]}x{b[1]}")
@pytest.mark.parametrize("split", ["default", "block-rows", "tokens"])
def test_bsr_int8_kernel(vnni, block, split):
    from dataclasses import replace

    x, u8, x_params = _activation()
    weight = random_block_sparse((N, K), 0.8, block, seed=4)
    weight[: block[0]] = 0.0  # an empty block row
    sparse = int8_bsr_kernel.to_int8_bsr(weight, block)
    qweight, w_scale = quantize.quantize_weight(weight)
    np.testing.assert_array_equal(sparse.to_dense(), qweight)
    xp = quantize.pack_activation(u8, M)
    shape = int8_bsr_kernel.Int8BsrShape(M, K, N, block)
    schedule = int8_bsr_kernel.default_schedule(shape, vnni)
    assert schedule.variant == ("rows" if block[0] % 16 == 0 else "tokens")
    assert schedule.by_tokens == (schedule.variant == "rows")  # 32 tokens: 4 tiles of 8 (rows); tokens: one tile
    if split != "default":
        schedule = replace(schedule, by_tokens=split == "tokens")
    target = host_target(2)
    out_shape = int8_bsr_kernel.output_shape(shape, schedule)

    def untransposed(array):
        return array.T if schedule.variant == "tokens" else array

    exact = int8_dense_kernel.build(int8_bsr_kernel.bsr_int8_matmul(shape, schedule, dequantize=False), target)
    acc, = _tensors(np.zeros(out_shape, np.int32))
    exact(*_tensors(xp, sparse.data, sparse.indices, sparse.indptr), acc)
    reference = quantize.integer_matmul(u8, qweight)
    np.testing.assert_array_equal(untransposed(acc.numpy()), reference)
    kernel = int8_dense_kernel.build(int8_bsr_kernel.bsr_int8_matmul(shape, schedule), target)
    y, = _tensors(np.zeros(out_shape, np.float32))
    kernel(*_tensors(xp, quantize.padded_params(x_params, M), sparse.data, sparse.indices, sparse.indptr, sparse.scale,
                     sparse.sums), y)
    expected = quantize.dequantize(reference, x_params, w_scale, sparse.sums)
    np.testing.assert_allclose(untransposed(y.numpy()), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("vnni", VNNI)
@pytest.mark.parametrize("block", [(1, 4), (4, 4), (8, 4)], ids=lambda b: f"{b[0]}x{b[1]}")
def test_tokens_kernels_split_128_tokens_into_two_tasks_and_stay_exact(vnni, block):
    """Sequence length 128: 64-token tiles (32 for 8x4, by its accumulators), one parallel task each."""
    m, tile = 128, 32 if block[0] == 8 else 64
    _, u8, _ = _activation(m=m)
    weight = random_block_sparse((N, K), 0.8, block, seed=5)
    weight[-block[0]:] = 0.0  # an empty last block row
    sparse = int8_bsr_kernel.to_int8_bsr(weight, block)
    shape = int8_bsr_kernel.Int8BsrShape(m, K, N, block)
    schedule = int8_bsr_kernel.default_schedule(shape, vnni)
    assert (schedule.variant, schedule.tile, schedule.by_tokens) == ("tokens", tile, True)
    exact = int8_dense_kernel.build(int8_bsr_kernel.bsr_int8_matmul(shape, schedule, dequantize=False), host_target(2))
    acc, = _tensors(np.zeros(int8_bsr_kernel.output_shape(shape, schedule), np.int32))
    exact(*_tensors(quantize.pack_activation(u8, m), sparse.data, sparse.indices, sparse.indptr), acc)
    np.testing.assert_array_equal(acc.numpy().T, quantize.integer_matmul(u8, sparse.to_dense()))


def test_vnni_choice_follows_the_environment(monkeypatch):
    monkeypatch.setenv(int8_dense_kernel.VNNI_ENV, "0")
    assert not int8_dense_kernel.use_vnni()
    assert int8_dense_kernel.default_schedule(M, N).label.endswith("/novnni")
    assert int8_dense_kernel.use_vnni(True)
    monkeypatch.delenv(int8_dense_kernel.VNNI_ENV)
    assert int8_dense_kernel.use_vnni() == int8_dense_kernel.cpu_has_vnni()


def test_supported_blocks():
    assert all(int8_bsr_kernel.supported_block(b) for b in BLOCKS)
    assert not any(int8_bsr_kernel.supported_block(b) for b in [(16, 1), (1, 1), (4, 2), (3, 4)])
