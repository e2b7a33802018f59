"""End to end on bert-tiny: import, rewrite, schedule, build, allclose to PyTorch, cache round trip."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from core.artifact_cache import ArtifactCache
from core.errors import SparseLabError
from core.tvm.amx_bsr_kernel import use_amx
from core.tvm.bsr_kernel import candidate_schedules
from core.tvm.bsr_rewrite import RewriteOptions
from core.tvm.compile import CompileOptions, compile_model
from core.tvm.relax_import import InputShape, example_inputs, export_model, to_relax
from core.tvm.tuning import tuned_schedules
from tests.fixtures_tvm import SEQ_LEN, magnitude_prune_

SHAPE = InputShape(batch=2, seq_len=SEQ_LEN)


def _torch_output(model, inputs):
    with torch.no_grad():
        return model(**inputs)[0].numpy()


@pytest.mark.slow  # compiles with TVM
@pytest.mark.parametrize("block", [(1, 1), (16, 1), None], ids=["bsr-1x1", "bsr-16x1", "dense"])
def test_compiled_model_matches_pytorch_with_the_same_pruned_weights(tiny_model, module_cache, block):
    magnitude_prune_(tiny_model, 0.9)
    options = CompileOptions(SHAPE, threads=2, rewrite=RewriteOptions(block=block, threshold=0.0 if block else 0.8))
    compiled = compile_model(tiny_model, options, name="bert-tiny", cache=module_cache)
    assert compiled.unscheduled == ()  # nothing left as naive loops
    assert compiled.converted_layers == (12 if block else 0)
    inputs = example_inputs(SHAPE, tiny_model.config.vocab_size)
    assert inputs["attention_mask"].min() == 0  # padding is exercised
    np.testing.assert_allclose(compiled.runner().run(inputs), _torch_output(tiny_model, inputs), rtol=1e-4, atol=1e-4)


@pytest.mark.slow  # compiles with TVM
def test_second_request_loads_the_cached_library(tiny_model, tmp_path):
    magnitude_prune_(tiny_model, 0.95)
    options = CompileOptions(SHAPE, threads=1, rewrite=RewriteOptions(block=(1, 1)))
    first = compile_model(tiny_model, options, cache=ArtifactCache(tmp_path, 10**10))
    again = compile_model(tiny_model, options, cache=ArtifactCache(tmp_path, 10**10))  # as another process would
    assert not first.cache_hit and again.cache_hit and again.path == first.path
    assert again.layers == first.layers and again.compile_s == first.compile_s
    inputs = example_inputs(SHAPE, tiny_model.config.vocab_size, seed=1)
    np.testing.assert_array_equal(again.runner().run(inputs), first.runner().run(inputs))

    with torch.no_grad():  # other weights, same shapes: a different library
        tiny_model.encoder.layer[0].output.dense.weight[0, 0] += 1.0
    assert not compile_model(tiny_model, options, cache=ArtifactCache(tmp_path, 10**10)).cache_hit


def test_an_op_torch_export_cannot_capture_is_named():
    class DataDependent(torch.nn.Module):
        def forward(self, input_ids, attention_mask):
            if (input_ids * attention_mask).sum() > 10:  # a branch on values: not capturable
                return input_ids + 1
            return input_ids

    with pytest.raises(SparseLabError, match=r"torch.export cannot capture this model at test_tvm_compile.py:\d+ "
                                             r"`if \(input_ids \* attention_mask\).sum\(\) > 10:"):
        export_model(DataDependent(), example_inputs(SHAPE, vocab_size=100))


def test_an_op_tvm_cannot_import_is_named():
    class Unsupported(torch.nn.Module):
        def forward(self, input_ids, attention_mask):
            return torch.nonzero(input_ids * attention_mask)

    exported = export_model(Unsupported(), example_inputs(SHAPE, vocab_size=100))
    with pytest.raises(SparseLabError, match=r"TVM's PyTorch importer failed.*nonzero"):
        to_relax(exported)


@pytest.mark.slow  # compiles with TVM
def test_tuned_schedules_are_measured_once_and_compile_correctly(tiny_model, tmp_path):
    magnitude_prune_(tiny_model, 0.9)
    cache = ArtifactCache(tmp_path, 10**10)
    tokens = SHAPE.batch * SHAPE.seq_len
    choices = tuned_schedules(tiny_model, block=(4, 1), threshold=0.5, tokens=tokens, threads=1, cache=cache)
    assert {(s.n, s.k) for s in choices} == {(128, 128), (512, 128), (128, 512)}
    assert all(choice in candidate_schedules(shape) for shape, choice in choices.items())
    cached = len(cache.entries())
    assert tuned_schedules(tiny_model, block=(4, 1), threshold=0.5, tokens=tokens, threads=1, cache=cache) == choices
    assert len(cache.entries()) == cached

    options = CompileOptions(SHAPE, threads=1, rewrite=RewriteOptions(block=(4, 1), threshold=0.5), tune=True)
    compiled = compile_model(tiny_model, options, cache=cache)
    assert {layer.schedule for layer in compiled.layers} <= {choice.label for choice in choices.values()}
    inputs = example_inputs(SHAPE, tiny_model.config.vocab_size)
    np.testing.assert_allclose(compiled.runner().run(inputs), _torch_output(tiny_model, inputs), rtol=1e-4, atol=1e-4)


@pytest.mark.slow  # compiles with TVM
def test_token_counts_that_are_not_a_vector_multiple_are_padded(tiny_model, module_cache):
    magnitude_prune_(tiny_model, 0.9)
    shape = InputShape(batch=1, seq_len=12)  # 12 tokens run as 16: full AVX-512 vectors
    compiled = compile_model(tiny_model, CompileOptions(shape, threads=1, rewrite=RewriteOptions(block=(1, 1))),
                             cache=module_cache)
    assert {layer.schedule for layer in compiled.layers} == {"tokens/16"}
    inputs = example_inputs(shape, tiny_model.config.vocab_size)
    np.testing.assert_allclose(compiled.runner().run(inputs), _torch_output(tiny_model, inputs), rtol=1e-4, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("block, vnni, amx", [((16, 4), None, None), ((16, 4), None, False), ((1, 4), None, None),
                                              ((4, 4), False, None), (None, None, None), (None, False, None)],
                         ids=["bsr-16x4", "bsr-16x4-vnni", "bsr-1x4", "bsr-4x4-fallback", "dense", "dense-fallback"])
def test_int8_build_follows_the_fp32_model(tiny_model, module_cache, block, vnni, amx):
    from core.tvm.benchmark import cosine_rows
    from tests.fixtures_tvm import random_block_sparse

    if block:
        with torch.no_grad():
            for module in tiny_model.modules():
                if isinstance(module, torch.nn.Linear):
                    mask = random_block_sparse(tuple(module.weight.shape), 0.8, block, seed=5) != 0
                    module.weight.mul_(torch.from_numpy(mask))
    shape = InputShape(batch=1, seq_len=SEQ_LEN)
    options = CompileOptions(shape, threads=2, rewrite=RewriteOptions(block=block, threshold=0.5, precision="int8",
                                                                      vnni=vnni, amx=amx))
    compiled = compile_model(tiny_model, options, name="bert-tiny", cache=module_cache)
    assert compiled.unscheduled == ()
    assert compiled.converted_layers == (12 if block else 0)
    assert {layer.precision for layer in compiled.layers} == {"int8"}
    assert all(("novnni" in layer.schedule) == (vnni is False) for layer in compiled.layers)
    # on an AMX CPU, 16x4 blocks and dense layers run on tiles unless AMX or VNNI is turned off
    on_tiles = use_amx() and amx is None and vnni is None and block in ((16, 4), None)
    assert all(("amx" in layer.schedule) == on_tiles for layer in compiled.layers)
    inputs = example_inputs(shape, tiny_model.config.vocab_size)
    assert cosine_rows(compiled.runner().run(inputs), _torch_output(tiny_model, inputs)) >= 0.99


def test_precision_is_in_the_cache_key_and_fp32_keys_are_unchanged():
    fp32 = CompileOptions(SHAPE, rewrite=RewriteOptions(block=(16, 4)))
    int8 = CompileOptions(SHAPE, rewrite=RewriteOptions(block=(16, 4), precision="int8"))
    assert "precision" not in fp32.key_parts() and int8.key_parts()["precision"] == "int8"
    with pytest.raises(ValueError, match="precision"):
        RewriteOptions(precision="int4")


class _KeyOnly:
    """A cache that notes the artifact compile_model asks for and builds nothing."""

    class AskedError(Exception):
        pass

    def get_or_build(self, spec, build, description=""):
        self.spec = spec
        raise self.AskedError


def _library_key(model, options: CompileOptions) -> str:
    cache = _KeyOnly()
    with pytest.raises(_KeyOnly.AskedError):
        compile_model(model, options, cache=cache)
    assert cache.spec.cpu_specific and "apache-tvm" in cache.spec.libraries
    return cache.spec.key


def test_the_library_key_changes_with_threads_sequence_length_block_threshold_and_weights(tiny_model):
    magnitude_prune_(tiny_model, 0.9)
    base = CompileOptions(InputShape(1, SEQ_LEN), threads=1, rewrite=RewriteOptions(block=(16, 1), threshold=0.5))
    variants = {
        "base": base,
        "threads": replace(base, threads=2),
        "seq_len": replace(base, shape=InputShape(1, 2 * SEQ_LEN)),
        "batch": replace(base, shape=InputShape(2, SEQ_LEN)),
        "block": replace(base, rewrite=replace(base.rewrite, block=(1, 1))),
        "dense": replace(base, rewrite=replace(base.rewrite, block=None)),
        "threshold": replace(base, rewrite=replace(base.rewrite, threshold=0.6)),
    }
    keys = {name: _library_key(tiny_model, options) for name, options in variants.items()}
    assert len(set(keys.values())) == len(keys), keys
    assert _library_key(tiny_model, replace(base)) == keys["base"]  # the same request finds the same library
    with torch.no_grad():
        tiny_model.encoder.layer[1].attention.self.query.weight[0, 0] += 1.0  # same shapes, other weights
    assert _library_key(tiny_model, base) not in keys.values()


@pytest.mark.slow
@pytest.mark.parametrize("block", [(16, 4), None], ids=["bsr-16x4", "dense"])
def test_int8_classification_head_keeps_the_fp32_top1(module_cache, block):
    """Issue 12: an int8 build answers a classification head's top-1 as the fp32 model does, input by input."""
    from core.model_source import resolve
    from core.tvm.benchmark import cosine_rows
    from tests.fixtures_tvm import random_block_sparse

    model = resolve("bert-tiny").load_model("sequence-classification")
    if block:
        with torch.no_grad():
            for module in model.bert.encoder.modules():
                if isinstance(module, torch.nn.Linear):
                    mask = random_block_sparse(tuple(module.weight.shape), 0.8, block, seed=7) != 0
                    module.weight.mul_(torch.from_numpy(mask))
    shape = InputShape(batch=16, seq_len=SEQ_LEN)  # 16 sentences, one build
    options = CompileOptions(shape, threads=2, rewrite=RewriteOptions(block=block, threshold=0.5, precision="int8"))
    compiled = compile_model(model, options, name="bert-tiny-classifier", cache=module_cache)
    precisions = {layer.name: layer.precision for layer in compiled.layers}
    assert {p for name, p in precisions.items() if ".encoder." in f".{name}"} == {"int8"}, precisions
    inputs = example_inputs(shape, model.config.vocab_size, seed=3)
    expected = _torch_output(model, inputs)
    actual = compiled.runner().run(inputs)
    assert actual.shape == expected.shape == (16, model.config.num_labels)
    assert cosine_rows(actual, expected) >= 0.99
    np.testing.assert_array_equal(actual.argmax(axis=1), expected.argmax(axis=1))
    assert len(set(expected.argmax(axis=1).tolist())) == 2  # both classes occur: the check can fail
