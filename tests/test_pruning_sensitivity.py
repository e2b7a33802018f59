"""Per-layer sensitivity on bert-tiny, the sensitivity command, and the greedy recipe."""

import argparse

import pytest
import torch

from core.commands import sensitivity as command
from core.errors import SparseLabError
from core.pruning.jobs import sensitivity_job
from core.pruning.selection import select_linear_layers
from core.pruning.sensitivity import apply_recipe, layer_sensitivity, matching_recipe, recipe, recipe_gain, speed_gains
from core.pruning.session import PruneSession

LAYERS = ["encoder.layer.1.attention.self.query", "encoder.layer.1.output.dense"]


@pytest.fixture(scope="module")
def session():
    return PruneSession.open("bert-tiny")


def test_each_layer_alone_at_each_sparsity(session):
    rows = layer_sensitivity("bert-tiny", [0.5, 0.9], {"patterns": LAYERS}, session=session)
    assert [(r["name"], r["sparsity"]) for r in rows] == [(n, s) for n in LAYERS for s in (0.5, 0.9)]
    for row in rows:
        assert row["fidelity_drop"] == pytest.approx(1.0 - row["mean_cosine"])
        assert -1e-6 <= row["fidelity_drop"] <= 2.0
    dense = dict(select_linear_layers(session.model))
    assert all(torch.equal(dense[n].weight, session.dense_weights[n]) for n in dense)  # restored


def test_command_prints_layers_name_sparsity_drop(monkeypatch, session):
    monkeypatch.setattr(PruneSession, "open", classmethod(lambda cls, *a, **k: session))
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    result = command.run(parser.parse_args(["--model", "bert-tiny", "--sparsities", "0.5", "--layers", LAYERS[0]]))
    assert [{k: r[k] for k in ("name", "sparsity")} for r in result["layers"]] == [{"name": LAYERS[0],
                                                                                    "sparsity": 0.5}]
    assert "fidelity_drop" in result["layers"][0]


@pytest.mark.parametrize("params, message", [
    ({"sparsities": [1.5]}, "outside"),
    ({"sparsities": [0.5], "patterns": ["decoder.*"]}, "matches none"),
    ({"sparsities": [0.5], "method": "block", "block": "3x1"}, "does not divide"),
])
def test_job_refuses_bad_input(params, message):
    with pytest.raises(SparseLabError, match=message):
        sensitivity_job({"model": "bert-tiny", **params})


def test_command_refuses_bad_sparsities():
    with pytest.raises(SparseLabError, match="comma-separated"):
        command._floats("0.5,lots")


SENSITIVITY = [
    {"name": "robust", "sparsity": 0.5, "fidelity_drop": 0.001},
    {"name": "robust", "sparsity": 0.9, "fidelity_drop": 0.01},
    {"name": "fragile", "sparsity": 0.5, "fidelity_drop": 0.05},
    {"name": "fragile", "sparsity": 0.9, "fidelity_drop": 0.3},
    {"name": "free", "sparsity": 0.5, "fidelity_drop": -0.001},
]
GAINS = {"robust": {0.5: 1.0, 0.9: 2.0}, "fragile": {0.5: 4.0, 0.9: 8.0}, "free": {0.5: 0.5}}


def test_recipe_spends_the_budget_where_it_buys_most_speed():
    assert recipe(SENSITIVITY, GAINS, 0.0) == {"robust": 0.0, "fragile": 0.0, "free": 0.5}
    assert recipe(SENSITIVITY, GAINS, 0.011) == {"robust": 0.9, "fragile": 0.0, "free": 0.5}
    assert recipe(SENSITIVITY, GAINS, 0.06) == {"robust": 0.9, "fragile": 0.5, "free": 0.5}
    assert recipe(SENSITIVITY, GAINS, 1.0) == {"robust": 0.9, "fragile": 0.9, "free": 0.5}
    as_mapping = {"robust": {0.5: 0.001, 0.9: 0.01}, "fragile": {0.5: 0.05}}
    assert recipe(as_mapping, {"robust": 1.0, "fragile": 10.0}, 0.05) == {"robust": 0.0, "fragile": 0.5}
    with pytest.raises(SparseLabError, match="negative"):
        recipe(SENSITIVITY, GAINS, -0.1)


def test_budget_is_never_exceeded():
    for budget in (0.0, 0.005, 0.02, 0.055, 0.2, 0.4):
        chosen = recipe(SENSITIVITY, GAINS, budget)
        drops = {(r["name"], r["sparsity"]): max(0.0, r["fidelity_drop"]) for r in SENSITIVITY}
        assert sum(drops.get((n, s), 0.0) for n, s in chosen.items()) <= budget + 1e-12


def test_speed_gains_come_from_the_kernel_tables(monkeypatch):
    from core.whatif import kernel_timings

    class Curve:
        def at(self, sparsity):
            return 10.0 * (1.0 - sparsity), 0.0

    monkeypatch.setattr(kernel_timings, "dense_kernel_ms", lambda tokens, shape, threads, cache=None:
                        (kernel_timings.KernelTime(8.0, 0.0, 1.0), True))  # what the real one returns
    monkeypatch.setattr(kernel_timings, "bsr_curve", lambda tokens, shape, block, threads, cache=None:
                        (Curve(), True))
    gains = speed_gains({"a": (128, 128), "b": (100, 128)}, [0.5, 0.9], block=(16, 1))
    assert gains["a"] == {0.5: pytest.approx(3.0), 0.9: pytest.approx(7.0)}
    assert gains["b"] == {0.5: 0.0, 0.9: 0.0}  # 16 does not divide 100 rows: estimated dense


def test_matching_recipe_reaches_the_target_gain_with_the_smallest_budget():
    # uniform 0.9 over robust and fragile saves 2 + 8 = 10 for a summed drop of 0.31
    levels, budget = matching_recipe(SENSITIVITY, GAINS, 10.0)
    assert recipe_gain(levels, GAINS) >= 10.0
    assert levels == {"robust": 0.9, "fragile": 0.9, "free": 0.5}  # 10.5: nothing cheaper saves 10
    assert budget == pytest.approx(0.31, abs=1e-6)
    levels, budget = matching_recipe(SENSITIVITY, GAINS, 4.5)
    assert levels == {"robust": 0.0, "fragile": 0.5, "free": 0.5} and budget == pytest.approx(0.05, abs=1e-6)
    with pytest.raises(SparseLabError, match="No recipe over the measured sparsities saves 11"):
        matching_recipe(SENSITIVITY, GAINS, 11.0)


def test_apply_recipe_prunes_each_layer_to_its_own_sparsity(session):
    levels = {LAYERS[0]: 0.0, LAYERS[1]: 0.9}
    scored, sparsity = apply_recipe(session, levels)
    layers = dict(session.model.named_modules())
    query, output = layers[LAYERS[0]].weight, layers[LAYERS[1]].weight
    assert int((output == 0).sum()) == round(0.9 * output.numel())  # magnitude, exactly 90% of this layer
    assert int((query == 0).sum()) == 0  # 0.0: stays dense
    assert sparsity == pytest.approx(round(0.9 * output.numel()) / (query.numel() + output.numel()))
    assert scored.min_cosine < 0.9999  # scored after pruning, not before
    session.restore()


@pytest.mark.slow  # times real kernels (What-if tables)
def test_speed_gains_from_real_kernel_tables(tmp_path):
    from core.artifact_cache import ArtifactCache

    cache = ArtifactCache(tmp_path, 10**10)
    gains = speed_gains({"a": (128, 128), "b": (128, 128)}, [0.5, 0.99], block=(16, 1), tokens=32, threads=1,
                        cache=cache)
    assert gains["a"] == gains["b"]  # one table per shape
    assert gains["a"][0.99] >= gains["a"][0.5]  # more zeros never save less (the tables are monotone)
    assert gains["a"][0.99] > 0  # 99% sparse beats the dense kernel
