import pytest

from core.errors import SparseLabError
from core.model_source import resolve
from core.pruning.selection import matches, select_linear_layers


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
