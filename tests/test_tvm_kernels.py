"""The BSR and dense TIR kernels against scipy/numpy, for every block shape and schedule."""

import numpy as np
import pytest
import scipy.sparse

from core.tvm import bsr_format, bsr_kernel, dense_kernel
from core.tvm.target import host_target
from tests.fixtures_tvm import random_block_sparse

M, K, N = 32, 64, 96
BLOCKS = [(1, 1), (2, 1), (4, 1), (8, 1), (16, 1), (32, 1), (4, 2), (16, 2)]


def _run(kernel, arrays, out_shape=(M, N)):
    import tvm

    device = tvm.cpu()
    args = [tvm.runtime.tensor(np.ascontiguousarray(a), device) for a in arrays]
    out = tvm.runtime.tensor(np.zeros(out_shape, np.float32), device)
    kernel(*args, out)
    return out.numpy()


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: f"{b[0]}x{b[1]}")
def test_bsr_format_matches_scipy(block):
    weight = random_block_sparse((N, K), 0.8, block, seed=1)
    ours = bsr_format.to_bsr(weight, block)
    theirs = scipy.sparse.bsr_matrix(weight, blocksize=block)
    theirs.eliminate_zeros()
    assert np.array_equal(ours.indptr, theirs.indptr)
    assert np.array_equal(ours.indices, theirs.indices)
    assert np.array_equal(ours.data.transpose(0, 2, 1), theirs.data)
    assert np.array_equal(ours.to_dense(), weight)
    assert ours.block_sparsity == pytest.approx(0.8, abs=1 / ours.block_count)


@pytest.mark.slow  # compiles with TVM
@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: f"{b[0]}x{b[1]}")
def test_bsr_kernel_matches_scipy_for_every_schedule(block):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((M, K)).astype(np.float32)
    weight = random_block_sparse((N, K), 0.85, block, seed=2)
    weight[: block[0]] = 0.0  # an empty block row: the reduction has extent 0
    bsr = bsr_format.to_bsr(weight, block)
    expected = (scipy.sparse.bsr_matrix(weight, blocksize=block) @ x.T).T
    shape = bsr_kernel.BsrKernelShape(M, K, N, block)
    schedules = {*bsr_kernel.candidate_schedules(shape), bsr_kernel.default_schedule(shape)}
    for schedule in schedules:
        out = _run(bsr_kernel.build_kernel(shape, schedule, host_target(2)), [x.T, bsr.data, bsr.indices, bsr.indptr],
                   bsr_kernel.output_shape(shape, schedule))
        out = out.T if schedule.variant == "tokens" else out  # tokens writes Y transposed
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-4, err_msg=schedule.label)


def test_to_bsr_refuses_a_block_that_does_not_divide():
    with pytest.raises(ValueError):
        bsr_format.to_bsr(np.ones((10, 8), np.float32), (4, 1))


@pytest.mark.slow  # compiles with TVM
@pytest.mark.parametrize("schedule", [dense_kernel.default_schedule(M, N), dense_kernel.DenseSchedule(16, 4)],
                         ids=lambda s: s.label)
def test_dense_kernel_matches_numpy(schedule):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((M, K)).astype(np.float32)
    weight = rng.standard_normal((N, K)).astype(np.float32)
    import tvm

    module = tvm.IRModule({"main": dense_kernel.dense_matmul(M, K, N, schedule).with_attr("global_symbol", "main")})
    kernel = tvm.compile(module, target=host_target(2))["main"]
    out = _run(kernel, [x, dense_kernel.pack_weight(weight, schedule.lanes)])
    np.testing.assert_allclose(out, x @ weight.T, rtol=1e-5, atol=1e-4)
