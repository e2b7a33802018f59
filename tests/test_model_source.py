import copy

import pytest
import torch

from core.errors import SparseLabError
from core.model_source import linear_layers, resolve, summarize


def test_bundled_minilm_loads_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    source = resolve("minilm")
    assert source.kind == "bundled"
    model = source.load_model()
    summary = summarize(model)
    assert 22_000_000 < summary.param_count < 23_000_000
    assert len([l for l in summary.linear_layers if ".encoder." in f".{l.name}"]) == 6 * 6
    tokenizer = source.load_tokenizer()
    with torch.no_grad():
        out = model(**tokenizer(["sparsity is cheap"], return_tensors="pt")).last_hidden_state
    assert out.shape[-1] == 384 and torch.isfinite(out).all()


def test_config_architectures_are_seeded():
    a = resolve("bert-tiny").load_model()
    b = resolve("bert-tiny").load_model()
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert resolve("bert-base").load_config().hidden_size == 768


def test_linear_layers_reported_with_shapes():
    summary = summarize(resolve("bert-tiny").load_model())
    shapes = {l.name: l.shape for l in summary.linear_layers}
    assert shapes["encoder.layer.0.intermediate.dense"] == (512, 128)
    assert shapes["encoder.layer.0.output.dense"] == (128, 512)


def test_local_folder_round_trip(tmp_path):
    model = resolve("bert-tiny").load_model()
    model.save_pretrained(tmp_path / "saved")
    source = resolve(str(tmp_path / "saved"))
    assert source.kind == "local"
    back = source.load_model()
    assert torch.equal(back.encoder.layer[0].output.dense.weight, model.encoder.layer[0].output.dense.weight)
    digest = source.fingerprint()["content"]
    (tmp_path / "saved" / "config.json").write_text((tmp_path / "saved" / "config.json").read_text() + " ")
    assert resolve(str(tmp_path / "saved")).fingerprint()["content"] != digest


def test_hub_id_fails_with_clear_message_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    source = resolve("bert-base-uncased")
    assert source.kind == "hub"
    with pytest.raises(SparseLabError, match="Could not load 'bert-base-uncased' from the Hugging Face hub"):
        source.load_model()


@pytest.mark.parametrize("name", ["", "./no/such/dir", "a/b/c"])
def test_bad_names_are_refused(name):
    with pytest.raises(SparseLabError):
        resolve(name)


def test_unknown_task_is_refused():
    with pytest.raises(SparseLabError, match="Unknown task"):
        resolve("bert-tiny").load_model(task="translation")


def test_a_folder_whose_weights_lack_a_layer_is_refused_naming_it(tiny_model, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "pruned"
    tiny_model.save_pretrained(folder, safe_serialization=True)
    state = load_file(folder / "model.safetensors")
    missing = [name for name in state if name.startswith("encoder.layer.1.output.dense.")]
    assert missing  # the layer really was there
    save_file({k: v for k, v in state.items() if k not in missing}, folder / "model.safetensors",
              metadata={"format": "pt"})
    with pytest.raises(SparseLabError, match="encoder.layer.1.output.dense"):
        resolve(str(folder)).load_model()  # what `tvm --weights`, store and prune all load


@pytest.mark.parametrize("family, model_class, decoder", [
    ("distilbert-tiny", "DistilBertModel", False),
    ("roberta-tiny", "RobertaModel", False),
    ("gpt2-tiny", "GPT2LMHeadModel", True),
    ("opt-tiny", "OPTForCausalLM", True),
    ("llama-tiny", "LlamaForCausalLM", True),
])
def test_config_families_load_seeded_with_their_classes(family, model_class, decoder):
    source = resolve(family)
    assert source.kind == "config" and source.is_decoder() == decoder
    model = source.load_model("causal-lm" if decoder else "base")
    assert type(model).__name__ == model_class and not model.training
    again = source.load_model("causal-lm" if decoder else "base")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    assert source.fingerprint()["config"]["model_type"] == source.model_type()


def test_full_size_gpt2_is_gpt2_small():
    config = resolve("gpt2").load_config()
    assert (config.model_type, config.n_layer, config.n_embd, config.vocab_size) == ("gpt2", 12, 768, 50257)


def test_llama_tiny_has_rmsnorm_rotary_swiglu_and_grouped_query_attention():
    model = resolve("llama-tiny").load_model("causal-lm")
    layer = model.model.layers[0]
    assert type(layer.input_layernorm).__name__ == "LlamaRMSNorm"
    assert {"gate_proj", "up_proj", "down_proj"} <= {name for name, _ in layer.mlp.named_children()}
    assert layer.self_attn.k_proj.out_features == layer.self_attn.q_proj.out_features // 2
    assert hasattr(model.model, "rotary_emb")


def test_gpt2_conv1d_becomes_linear_with_the_same_outputs():
    import transformers

    from core.model_source import conv1d_to_linear

    config = resolve("gpt2-tiny").load_config()
    original = transformers.GPT2LMHeadModel(config).eval()
    converted = copy.deepcopy(original)
    assert set(conv1d_to_linear(converted)) == conv1d_names()
    layer = converted.transformer.h[0].attn.c_attn
    assert type(layer) is torch.nn.Linear and tuple(layer.weight.shape) == (384, 128)  # (out, in)
    assert torch.equal(layer.weight, original.transformer.h[0].attn.c_attn.weight.t())
    assert set(linear_layers(converted)) == {*conv1d_names(), "lm_head"}
    ids = torch.randint(0, config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(original(ids).logits, converted(ids).logits, atol=1e-5)


def conv1d_names() -> set[str]:
    return {f"transformer.h.{i}.{name}" for i in (0, 1) for name in ("attn.c_attn", "attn.c_proj", "mlp.c_fc",
                                                                        "mlp.c_proj")}


def test_linear_layers_converts_a_conv1d_model_built_elsewhere():
    import transformers

    model = transformers.GPT2Model(resolve("gpt2-tiny").load_config())
    assert len(linear_layers(model)) == 8
    assert type(model.h[1].mlp.c_proj) is torch.nn.Linear


def test_a_pruned_gpt2_saves_in_conv1d_layout_and_reloads(tmp_path):
    import transformers

    model = resolve("gpt2-tiny").load_model("causal-lm")
    with torch.no_grad():
        model.transformer.h[0].attn.c_proj.weight[:, :64] = 0  # square 128x128: orientation must survive
        model.transformer.h[0].attn.c_attn.weight[:100] = 0
    model.save_pretrained(tmp_path / "saved")
    plain = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "saved")  # the original classes take it
    assert type(plain.transformer.h[0].attn.c_attn).__name__ == "Conv1D"
    assert tuple(plain.transformer.h[0].attn.c_attn.weight.shape) == (128, 384)
    back = resolve(str(tmp_path / "saved")).load_model("causal-lm")
    for name in ("transformer.h.0.attn.c_proj", "transformer.h.0.attn.c_attn"):
        assert torch.equal(linear_layers(back)[name].weight, linear_layers(model)[name].weight)
    ids = torch.randint(0, 1000, (1, 10), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(back(ids).logits, model(ids).logits)
    fresh = resolve("gpt2-tiny").load_model("causal-lm")
    fresh.load_state_dict(model.state_dict())  # state_dict and load_state_dict agree on the layout
    assert torch.equal(fresh.transformer.h[0].attn.c_proj.weight, model.transformer.h[0].attn.c_proj.weight)


def test_a_folder_without_tokenizer_files_has_no_tokenizer_and_says_so(tmp_path):
    resolve("bert-tiny").load_model().save_pretrained(tmp_path / "bare")
    source = resolve(str(tmp_path / "bare"))
    assert source.find_tokenizer() is None
    with pytest.raises(SparseLabError, match="has no tokenizer files .*tokenizer.json"):
        source.load_tokenizer()
    assert resolve("roberta-tiny").find_tokenizer() is None
    with pytest.raises(SparseLabError, match="random-weight roberta architecture .* no tokenizer"):
        resolve("roberta-tiny").load_tokenizer()
    assert resolve("distilbert-tiny").load_tokenizer()("sparse")["input_ids"]  # BERT's vocabulary: MiniLM's


def test_an_unknown_architecture_says_what_was_tried(tmp_path):
    folder = tmp_path / "custom"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "sparsenet9", "architectures": ["SparseNet9Model"]}')
    with pytest.raises(SparseLabError, match=r"model_type 'sparsenet9' \(architectures: SparseNet9Model\), which "
                                             r"this transformers does not know \(tried transformers .* "
                                             r"AutoConfig.from_pretrained"):
        resolve(str(folder)).load_model()
    (tmp_path / "empty").mkdir()
    with pytest.raises(SparseLabError, match="no config.json in the folder .*AutoConfig.from_pretrained"):
        resolve(str(tmp_path / "empty")).load_model()
    (folder / "config.json").write_text('{"hidden_size": 8}')
    with pytest.raises(SparseLabError, match="config.json names no model_type"):
        resolve(str(folder)).load_model()


def test_a_task_the_architecture_lacks_is_refused_with_what_was_tried():
    with pytest.raises(SparseLabError, match="distilbert architecture has no 'causal-lm' head .*AutoModelForCausalLM"):
        resolve("distilbert-tiny").load_model("causal-lm")
