import pytest

from core.errors import SparseLabError
from core.tflite.options import MODELS, PruneSpec, TfliteSettings


@pytest.mark.parametrize("text, method, sparsity, mn, label", [
    ("constant:0.5", "constant", 0.5, None, "constant:0.5"),
    (" poly : 0.75 ", "poly", 0.75, None, "poly:0.75"),
    ("xnnpack:0.8", "xnnpack", 0.8, None, "xnnpack:0.8"),
    ("mn:2:4", "mn", 0.5, (2, 4), "mn:2:4"),
    ("mn:1:4", "mn", 0.75, (1, 4), "mn:1:4"),
])
def test_prune_spec_parses(text, method, sparsity, mn, label):
    spec = PruneSpec.parse(text)
    assert (spec.method, spec.sparsity, spec.mn, spec.label) == (method, sparsity, mn, label)


@pytest.mark.parametrize("text", ["constant:1.5", "constant:0", "poly:half", "random:0.5", "mn:4:4", "mn:5:4",
                                  "mn:2", "", "constant"])
def test_prune_spec_rejects(text):
    with pytest.raises(SparseLabError):
        PruneSpec.parse(text)


def test_settings_defaults_and_round_trip():
    settings = TfliteSettings.from_params({"model": "digits-mobilenet", "prune": "xnnpack:0.75, mn:2:4,mn:2:4",
                                           "export": "sparse,float", "epochs": 6, "threads": "2,1,2"})
    assert settings.choice is MODELS["digits-mobilenet"]
    assert [p.label for p in settings.prunes] == ["xnnpack:0.75", "mn:2:4"]
    assert settings.variants == ("sparse", "float")
    assert settings.threads == (1, 2)
    assert settings.fine_tune_epochs == 3  # half the dense epochs unless chosen
    assert TfliteSettings.from_params(settings.as_params()) == settings


@pytest.mark.parametrize("params, words", [
    ({"model": "resnet"}, "Unknown model"),
    ({"export": "float,fp16"}, "fp16"),
    ({"epochs": 0}, "Epochs"),
    ({"threads": "1,zero"}, "Thread count"),
    ({"prune": " , "}, "at least one pruning"),
    ({"seed": "x"}, "Seed"),
])
def test_settings_reject_bad_params(params, words):
    with pytest.raises(SparseLabError, match=words):
        TfliteSettings.from_params(params)


def test_model_choices_feed_their_input_shapes():
    assert MODELS["digits-cnn"].input_shape == (8, 8, 1)
    assert MODELS["digits-mobilenet"].input_shape == (32, 32, 3)


@pytest.mark.parametrize("params", [
    {},
    {"model": "digits-cnn", "prune": ["constant:0.5", "mn:1:4"], "export": ["int8"], "epochs": 2, "seed": 7,
     "threads": [4], "repeats": 10, "warmup": 0, "batch_size": 16, "fine_tune_epochs": 5},
    {"model": "digits-mobilenet", "prune": "poly:0.75", "export": "float,sparse", "threads": "1,2,4"},
])
def test_settings_round_trip(params):
    settings = TfliteSettings.from_params(params)
    assert TfliteSettings.from_params(settings.as_params()) == settings
