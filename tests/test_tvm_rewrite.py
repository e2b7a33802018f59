"""The Relax pass: which Linear layers become BSR kernels, and what its report says."""

import pytest

from core.tvm.bsr_rewrite import RewriteOptions, linear_names, rewrite_linears
from core.tvm.relax_import import InputShape, import_model
from tests.fixtures_tvm import SEQ_LEN, magnitude_prune_

KEPT_DENSE = "encoder.layer.0.attention.self.query"


@pytest.fixture
def pruned(tiny_model):
    magnitude_prune_(tiny_model, 0.9, skip=(KEPT_DENSE,))
    return tiny_model


def _rewrite(model, options):
    return rewrite_linears(import_model(model, InputShape(1, SEQ_LEN)), options, linear_names(model))


def test_every_sparse_linear_becomes_bsr_and_the_report_names_it(pruned):
    mod, report = _rewrite(pruned, RewriteOptions(block=(1, 1), threshold=0.8))
    by_name = {layer.name: layer for layer in report}
    # the pooler is unused by the last hidden state, the graph's output: not imported
    assert set(by_name) == set(linear_names(pruned).values()) - {"pooler.dense"}
    dense = by_name.pop(KEPT_DENSE)
    assert dense.kernel == "dense" and "< threshold 0.8" in dense.note and dense.block_sparsity == 0.0
    for layer in by_name.values():
        assert layer.kernel == "bsr" and layer.block == "1x1"
        assert layer.block_sparsity == pytest.approx(0.9, abs=0.01)
        assert layer.nnz_blocks == int((pruned.get_submodule(layer.name).weight != 0).sum())
    intermediate = by_name["encoder.layer.1.intermediate.dense"]
    assert intermediate.shape == (512, 128)
    calls = mod.script().count("R.call_tir(cls.bsr_")
    assert calls == 11
    assert "R.matmul(" in mod.script()  # attention's batch matmuls are not Linears: untouched


def test_block_sparsity_is_measured_per_block(pruned):
    """Unstructured 90% zeros leave almost no 16x1 block empty: no layer reaches the threshold."""
    _, report = _rewrite(pruned, RewriteOptions(block=(16, 1), threshold=0.8))
    assert all(layer.kernel == "dense" and layer.block == "16x1" for layer in report)
    for layer in report:  # a 16x1 block is empty with probability 0.9 ** 16 = 0.19 (query: unpruned, 0)
        assert layer.block_sparsity == pytest.approx(0.0 if layer.name == KEPT_DENSE else 0.9 ** 16, abs=0.05)
    assert all("block sparsity" in layer.note for layer in report)


def test_a_block_that_does_not_divide_a_layer_is_skipped_with_a_note(pruned):
    _, report = _rewrite(pruned, RewriteOptions(block=(3, 1), threshold=0.5))
    assert all(layer.kernel == "dense" and "does not divide" in layer.note for layer in report)


def test_dense_build_converts_nothing(pruned):
    _, report = _rewrite(pruned, RewriteOptions(block=None))
    assert [layer.kernel for layer in report] == ["dense"] * 12
