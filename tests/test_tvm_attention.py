"""Fused self-attention (AMX bf16): the kernel against a numpy reference, the layout checks that guard the Relax
pass, the pass on a tiny BERT, and the compiled model against PyTorch."""

import numpy as np
import pytest
import torch

from core.tvm import amx_bf16_matmul, attention
from core.tvm.bsr_rewrite import RewriteOptions, bf16_attention_calls, linear_names, rewrite_linears
from core.tvm.compile import CompileOptions, compile_model
from core.tvm.relax_import import InputShape, example_inputs, import_model
from core.tvm.target import host_target

AMX_BF16 = pytest.mark.skipif(not amx_bf16_matmul.use_bf16(True), reason="this CPU has no AMX bf16")
SCALE = 0.125 ** 0.5  # transformers scales Q and K by d ** -0.25 each (d = 64)


def _bf16(x):
    return torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(torch.bfloat16).double().numpy()


def _reference(q, k, v, mask, batch, heads, seq, dim):
    """What the kernel promises: bf16-rounded scaled Q, K and V; float64 scores, mask and softmax; bf16 P."""
    out = np.zeros(q.shape)
    for b in range(batch):
        rows = slice(b * seq, (b + 1) * seq)
        for h in range(heads):
            cols = slice(h * dim, (h + 1) * dim)
            scores = _bf16(q[rows, cols] * SCALE) @ _bf16(k[rows, cols] * SCALE).T + mask[b % mask.shape[0]]
            top = scores.max(axis=-1, keepdims=True)
            probs = np.where(np.isneginf(top), 0.0, np.exp(scores - np.where(np.isneginf(top), 0, top)))
            probs = probs / np.maximum(probs.sum(axis=-1, keepdims=True), 1e-300)
            out[rows, cols] = _bf16(probs) @ _bf16(v[rows, cols])
    return out


@AMX_BF16
@pytest.mark.parametrize("batch, mask_batch", [(1, 1), (2, 2), (2, 1)])
def test_kernel_matches_bf16_attention_with_masks_and_fully_masked_rows(batch, mask_batch):
    import tvm

    heads, seq, dim = 2, 32, 64
    rng = np.random.default_rng(batch + mask_batch)
    q, k, v = (rng.standard_normal((batch * seq, heads * dim)).astype(np.float32) * 2 for _ in range(3))
    mask = np.zeros((mask_batch, seq, seq), np.float32)
    mask[0, :, -8:] = np.finfo(np.float32).min  # padding keys, as transformers writes them
    mask[-1, 5, :] = -np.inf  # one query that sees nothing: zeros, as transformers' attention gives
    func = amx_bf16_matmul.attention_kernel(batch, heads, seq, dim, mask_batch, SCALE, SCALE)
    library = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), host_target(2))
    args = [tvm.runtime.tensor(x) for x in (q, k, v, mask, np.full(q.shape, np.nan, np.float32))]
    library["main"](*args)
    out = args[-1].numpy()
    expected = _reference(q, k, v, mask, batch, heads, seq, dim)
    assert np.abs(out - expected).max() <= 2e-5 * np.abs(expected).max()
    assert not np.any(out[(batch - 1) * seq + 5]) and np.isfinite(out).all()  # the query that sees nothing


def test_kernel_refuses_shapes_it_cannot_tile():
    assert amx_bf16_matmul.attention_supported(128, 64) and not amx_bf16_matmul.attention_supported(16, 64)
    assert not amx_bf16_matmul.attention_supported(128, 48)
    with pytest.raises(ValueError, match="multiples of 32"):
        amx_bf16_matmul.attention_kernel(1, 12, 100, 64, 1, 1.0, 1.0)
    with pytest.raises(ValueError, match="mask covers 3"):
        amx_bf16_matmul.attention_kernel(2, 12, 128, 64, 3, 1.0, 1.0)


def test_heads_layout_is_the_head_split_transformers_exports():
    batch, seq, heads, dim = 2, 4, 3, 2
    tokens = np.arange(batch * seq * heads * dim).reshape(batch, seq, heads * dim)
    split = tokens.reshape(batch, seq, heads, dim).transpose(0, 2, 1, 3)  # view(..).transpose(1, 2)
    np.testing.assert_array_equal(attention.heads_layout(batch, seq, heads, dim),
                                  split.reshape(batch * heads, seq, dim))
    np.testing.assert_array_equal(attention.heads_layout(batch, seq, heads, dim, transposed=True),
                                  split.transpose(0, 1, 3, 2).reshape(batch * heads, dim, seq))


def _relax_chain(shape, steps):
    """A Relax function applying ``steps`` (("reshape", shape) / ("permute", axes)) to one input, returned with
    its module: what the layout checks replay."""
    from tvm import relax

    builder = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(shape, "float32"))
    with builder.function("main", [x]):
        with builder.dataflow():
            value = x
            for kind, arg in steps:
                value = builder.emit(relax.op.reshape(value, arg) if kind == "reshape"
                                     else relax.op.permute_dims(value, arg))
            out = builder.emit_output(value)
        builder.emit_func_output(out)
    return builder.get()


def test_a_transpose_chain_that_restores_the_order_becomes_one_reshape_and_others_stay():
    back = [("reshape", (2, 4, 3, 2)), ("permute", [0, 2, 1, 3]), ("reshape", (6, 4, 2)), ("reshape", (2, 3, 4, 2)),
            ("permute", [0, 2, 1, 3]), ("reshape", (8, 6))]
    simplified = attention.simplify_layouts(_relax_chain((8, 6), back))
    assert "permute_dims" not in simplified.script()
    away = back[:-2] + [("permute", [0, 1, 3, 2]), ("reshape", (8, 6))]  # ends in another order: a real copy
    assert "permute_dims" in attention.simplify_layouts(_relax_chain((8, 6), away)).script()


def _bert(seq_len, heads=2):
    import transformers

    config = transformers.BertConfig(hidden_size=128, num_hidden_layers=2, num_attention_heads=heads,
                                     intermediate_size=256, vocab_size=512, max_position_embeddings=seq_len)
    torch.manual_seed(0)
    return transformers.BertModel(config).eval()


@AMX_BF16
@pytest.mark.parametrize("batch", [1, 2])
def test_int8_builds_fuse_every_attention_and_drop_the_head_transposes(batch):
    model = _bert(32)
    mod, _ = rewrite_linears(import_model(model, InputShape(batch, 32)),
                             RewriteOptions(block=None, precision="int8", attention_bf16=True), linear_names(model))
    script = mod.script()
    assert script.count("R.call_tir(cls.attention_bf16_") == 2 == bf16_attention_calls(mod)
    assert "R.permute_dims" not in script and "R.nn.softmax" not in script and "R.matmul" not in script


@AMX_BF16
def test_heads_the_kernel_cannot_take_keep_their_matmuls():
    model = _bert(32, heads=4)  # 32-dim heads: attention_supported wants multiples of 32 (met) ...
    mod, _ = rewrite_linears(import_model(model, InputShape(1, 16)),  # ... but 16 tokens are too few
                             RewriteOptions(block=None, precision="int8", attention_bf16=True), linear_names(model))
    assert "attention_bf16_" not in mod.script() and "R.nn.softmax" in mod.script()


@pytest.mark.slow
@AMX_BF16
@pytest.mark.parametrize("batch", [1, 2])
def test_compiled_int8_model_with_fused_attention_follows_pytorch(module_cache, batch):
    from core.tvm.benchmark import cosine_rows

    model = _bert(64)
    shape = InputShape(batch, 64)
    compiled = compile_model(model, CompileOptions(shape, threads=2, rewrite=RewriteOptions(
        block=None, precision="int8", attention_bf16=True)), name="bert-fused", cache=module_cache)
    assert compiled.bf16_attention_calls == 2 and compiled.attention_precision == "bf16" and compiled.unscheduled == ()
    inputs = example_inputs(shape, model.config.vocab_size, seed=batch)
    inputs["attention_mask"][-1, 40:] = 0  # sequences padded differently: the mask is per sequence
    with torch.no_grad():
        expected = model(**inputs)[0].numpy()
    assert cosine_rows(compiled.runner().run(inputs), expected) >= 0.999
