"""The Prune page's layer sensitivity: a real job on bert-tiny, drawn as a heatmap of layers x sparsities."""

import pytest

from tests.pages import finish_job, open_page

pytestmark = pytest.mark.slow  # runs the job


def test_sensitivity_heatmap_has_a_row_per_layer_and_a_column_per_sparsity():
    at = open_page("views/prune.py")
    at.selectbox(key="sensitivity-model").select("bert-tiny")
    at.multiselect(key="sensitivity-sparsities").set_value([0.5, 0.9])
    at.button(key="sensitivity-submit").click().run()
    finish_job(at, "sensitivity")
    [chart] = [c for c in at.get("plotly_chart") if "fidelity drop per layer" in c.proto.spec]
    import json

    heatmap = json.loads(chart.proto.spec)["data"][0]
    assert heatmap["x"] == ["50%", "90%"] and len(heatmap["y"]) == 12  # bert-tiny's 12 encoder Linears
    assert all(row[1] >= row[0] - 1e-6 for row in heatmap["z"])  # pruning a layer harder never helps here
