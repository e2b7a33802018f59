import pytest
import torch

from core.errors import SparseLabError
from core.model_source import linear_layers, resolve
from core.pruning.selection import (
    LEGACY_PATTERNS,
    matches,
    pattern_selection,
    select_linear_layers,
    selection_report,
)


def test_default_is_encoder_layers_only(tiny_model):
    names = list(select_linear_layers(tiny_model))
    assert len(names) == 2 * 6
    assert all(name.startswith("encoder.layer.") for name in names)
    assert "pooler.dense" not in names


def test_default_keeps_pooler_and_head_dense_under_a_task_head():
    model = resolve("bert-tiny").load_model("sequence-classification")
    names = list(select_linear_layers(model))
    assert len(names) == 12 and all(name.startswith("bert.encoder.") for name in names)
    assert "classifier" not in names and "bert.pooler.dense" not in names


@pytest.mark.parametrize("pattern, count", [
    ("*attention*", 8),            # glob over the whole name
    ("intermediate", 2),           # plain word: anywhere in the name
    (r"re:layer\.0\.", 6),         # regular expression
    ("pooler.dense", 1),
])
def test_patterns_override_the_default(tiny_model, pattern, count):
    assert len(select_linear_layers(tiny_model, [pattern])) == count


def test_exclude_removes_matches(tiny_model):
    names = select_linear_layers(tiny_model, exclude=["*attention.self*"])
    assert len(names) == 12 - 6 and not any("self" in name for name in names)


def test_glob_is_anchored_but_plain_word_is_not():
    assert matches("encoder.layer.0.output.dense", "output") is True
    assert matches("encoder.layer.0.output.dense", "output*") is False
    assert matches("encoder.layer.0.output.dense", "*output.dense") is True


@pytest.mark.parametrize("patterns, exclude, message", [
    (["decoder.*"], (), "'decoder.\\*' matches none"),
    (["intermediate"], ["nothing-like-this"], "'nothing-like-this' matches none"),
    (["intermediate"], ["intermediate"], "leave no Linear layer"),
    (["re:("], (), "not a valid regular expression"),
])
def test_selecting_nothing_is_refused(tiny_model, patterns, exclude, message):
    with pytest.raises(SparseLabError, match=message):
        select_linear_layers(tiny_model, patterns, exclude)


@pytest.mark.parametrize("task", ["base", "sequence-classification", "question-answering"])
def test_structure_selects_what_the_encoder_pattern_did_for_bert(task):
    model = resolve("bert-tiny").load_model(task)
    by_structure = selection_report(model)
    assert by_structure.selected_by == "structure"
    assert list(by_structure.layers) == list(pattern_selection(model, LEGACY_PATTERNS).layers)


def test_structure_selects_what_the_encoder_pattern_did_for_minilm():
    model = resolve("minilm").load_model()
    assert list(select_linear_layers(model)) == list(pattern_selection(model, LEGACY_PATTERNS).layers)
    assert len(select_linear_layers(model)) == 6 * 6


def test_report_says_why_each_layer_is_in_or_out():
    model = resolve("bert-tiny").load_model("sequence-classification")
    report = selection_report(model)
    assert [b.describe() for b in report.blocks] == ["bert.encoder.layer (2 repeated BertLayer blocks)"]
    assert (report.reasons["bert.encoder.layer.1.output.dense"]
            == "in: block 1 of bert.encoder.layer (2 repeated blocks)")
    assert report.reasons["bert.pooler.dense"] == report.reasons["classifier"] == "out: task head"
    assert set(report.reasons) == set(linear_layers(model))


@pytest.mark.parametrize("family, task, blocks, count, head", [
    ("gpt2-tiny", "causal-lm", "transformer.h (2 repeated GPT2Block blocks)", 8, "lm_head"),
    ("gpt2-tiny", "base", "h (2 repeated GPT2Block blocks)", 8, None),
    ("opt-tiny", "causal-lm", "model.decoder.layers (2 repeated OPTDecoderLayer blocks)", 12, "lm_head"),
    ("llama-tiny", "causal-lm", "model.layers (2 repeated LlamaDecoderLayer blocks)", 14, "lm_head"),
    ("distilbert-tiny", "sequence-classification",
     "distilbert.transformer.layer (2 repeated TransformerBlock blocks)", 12, "pre_classifier"),
    ("roberta-tiny", "base", "encoder.layer (2 repeated RobertaLayer blocks)", 12, "pooler.dense"),
])
def test_structure_finds_the_blocks_of_every_family(family, task, blocks, count, head):
    model = resolve(family).load_model(task)
    report = selection_report(model)
    assert [b.describe() for b in report.blocks] == [blocks]
    assert len(report.layers) == count
    prefix = blocks.split(" ")[0] + "."
    assert all(name.startswith(prefix) for name in report.layers)
    if head:
        assert head not in report.layers and report.reasons[head] == "out: task head"


def test_gpt2_block_report_and_conv1d_layers_are_linears():
    model = resolve("gpt2-tiny").load_model("causal-lm")
    report = selection_report(model)
    assert report.reasons["transformer.h.1.attn.c_attn"] == "in: block 1 of transformer.h (2 repeated blocks)"
    assert tuple(report.layers["transformer.h.0.attn.c_attn"].weight.shape) == (3 * 128, 128)  # (out, in)


def test_layers_outside_the_blocks_are_reported_as_such():
    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed_proj = torch.nn.Linear(4, 8)
            self.layers = torch.nn.ModuleList([torch.nn.Sequential(torch.nn.Linear(8, 8)) for _ in range(3)])
            self.final_proj = torch.nn.Linear(8, 8)
            self.lm_head = torch.nn.Linear(8, 5)

    report = selection_report(Model())
    assert list(report.layers) == ["layers.0.0", "layers.1.0", "layers.2.0"]
    assert report.reasons == {"embed_proj": "out: embeddings",
                              "layers.0.0": "in: block 0 of layers (3 repeated blocks)",
                              "layers.1.0": "in: block 1 of layers (3 repeated blocks)",
                              "layers.2.0": "in: block 2 of layers (3 repeated blocks)",
                              "final_proj": "out: outside the repeated blocks", "lm_head": "out: task head"}


def test_patterns_override_structure_and_say_so(tiny_model):
    report = selection_report(tiny_model, ["pooler"], exclude=[])
    assert report.selected_by == "pattern" and list(report.layers) == ["pooler.dense"]
    assert report.reasons["pooler.dense"] == "in: matches pattern 'pooler'"
    assert report.reasons["encoder.layer.0.output.dense"] == "out: matches no layer pattern"
    excluded = selection_report(tiny_model, exclude=["intermediate"])
    assert excluded.selected_by == "structure" and len(excluded.layers) == 10
    assert excluded.reasons["encoder.layer.0.intermediate.dense"] == "out: excluded by 'intermediate'"


def test_a_model_without_repeated_blocks_asks_for_patterns():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    with pytest.raises(SparseLabError, match="no repeated transformer blocks.*give layer patterns"):
        select_linear_layers(model)
    assert list(select_linear_layers(model, ["0"])) == ["0"]
