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
