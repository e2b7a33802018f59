"""The Prune page end to end: a real pruning job and a real sweep, then the charts."""

import pytest

from tests.pages import finish_job, open_page

pytestmark = pytest.mark.slow  # real pruning and sweep jobs


def test_prune_page_prunes_and_sweeps():
    at = open_page("views/prune.py")
    at.selectbox(key="prune-model").select("bert-tiny")
    at.slider(key="prune-sparsity").set_value(0.5)
    at.button(key="prune-submit").click().run()
    finish_job(at, "prune")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Sparsity of pruned layers"] == "50.0%"
    assert len(at.get("plotly_chart")) == 2  # layer bars and heatmap; no sweep yet

    at.selectbox(key="sweep-model").select("bert-tiny")
    at.multiselect(key="sweep-methods").set_value(["magnitude"])
    at.multiselect(key="sweep-sparsities").set_value([0.0, 0.5])
    at.button(key="sweep-submit").click().run()
    finish_job(at, "prune_sweep")
    assert len(at.get("plotly_chart")) == 3


def test_a_decoder_shows_next_token_scores_and_sweeps_them():
    """gpt2-tiny is scored on next tokens, not embeddings: the page shows those scores and offers them to the
    sweep chart (it used to look for mean_cosine and stop with a KeyError)."""
    at = open_page("views/prune.py")
    at.selectbox(key="prune-model").select("gpt2-tiny")
    at.selectbox(key="prune-task").select("causal-lm")
    at.slider(key="prune-sparsity").set_value(0.5)
    at.button(key="prune-submit").click().run()
    finish_job(at, "prune")
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Sparsity of pruned layers"] == "50.0%"
    assert metrics["Next-token agreement vs dense"].endswith("%")
    assert metrics["Perplexity, pruned / dense"].endswith("x")
    assert "Mean cosine vs dense" not in metrics

    at.selectbox(key="sweep-model").select("gpt2-tiny")
    at.multiselect(key="sweep-methods").set_value(["magnitude"])
    at.multiselect(key="sweep-sparsities").set_value([0.0, 0.5])
    at.button(key="sweep-submit").click().run()
    finish_job(at, "prune_sweep")
    assert not at.exception
    assert at.radio(key="sweep-metric").options[:2] == ["Next-token agreement vs dense", "Perplexity, pruned / dense"]


def test_recovery_from_per_layer_sparsegpt_runs_as_a_job_and_keeps_the_overall_sparsity():
    """The recovery form's "sparsegpt per-layer" start: layers measured on calibration text get unequal sparsities
    (the same overall), then one minute of distillation; the result lands in the library under that label."""
    from core.jobs import default_runner

    at = open_page("views/prune.py")
    at.selectbox(key="recover-model").select("bert-tiny")
    at.selectbox(key="recover-method").select("sparsegpt per-layer")
    at.slider(key="recover-sparsity").set_value(0.6)
    at.number_input(key="recover-minutes").set_value(1)
    at.button(key="recover-submit").click().run()
    finish_job(at, "recover", timeout_s=600)
    [job] = default_runner().list(name="recover")
    result = job.result
    selected = [layer for layer in result["layers"] if layer["selected"]]
    assert len({round(layer["sparsity"], 2) for layer in selected}) > 1  # the layers differ
    assert 0.6 <= result["sparsity"] <= 0.65 and "per-layer" in result["library_name"]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Sparsity"] == f"{result['sparsity']:.1%}"
