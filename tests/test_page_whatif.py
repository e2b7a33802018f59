"""The What-if page end to end on bert-tiny: real kernel timings, the estimate, and one real check."""

import pytest

from tests.pages import finish_job, open_page

pytestmark = pytest.mark.slow  # real kernel timings and a whole-model TVM compile


def test_whatif_page_estimates_and_checks():
    at = open_page("views/whatif.py")
    at.selectbox(key="whatif-model").select("bert-tiny")
    at.multiselect(key="whatif-sparsities").set_value([0.8, 0.95])
    at.multiselect(key="whatif-blocks").set_value(["1x1", "16x1"])
    at.number_input(key="whatif-seq-len").set_value(32)
    at.number_input(key="whatif-threads").set_value(1)
    at.multiselect(key="whatif-peers").set_value(["onnxruntime-fp32"])
    at.button(key="whatif-submit").click().run()
    finish_job(at, "whatif")
    assert len(at.get("plotly_chart")) == 2
    metrics = {m.label: m for m in at.metric}
    assert metrics["Fastest peer (measured)"].value.endswith(" ms") and "onnxruntime-fp32" in str(
        metrics["Fastest estimate"].delta)
    # bert-tiny's 3 pruned shapes, each in the rows and tokens builds
    assert any("inside one compile of the model (at 0.85 sparsity)" in c.value and "over 6 kernels" in c.value
               for c in at.caption)
    at.number_input(key="whatif-check-repeats").set_value(5)
    at.button(key="whatif-check-submit").click().run()
    finish_job(at, "whatif_check")
    assert any("measured" in m.value for m in [*at.success, *at.warning])
    assert {m.label: m.value for m in at.metric}["Checks"] == "1"


def test_whatif_page_estimates_int8_with_its_blocks():
    at = open_page("views/whatif.py")
    at.radio(key="whatif-precision").set_value("int8").run()
    assert at.multiselect(key="whatif-blocks-int8").options == ["16x4", "4x4", "1x4"]
    at.selectbox(key="whatif-model").select("bert-tiny")
    at.multiselect(key="whatif-sparsities").set_value([0.9])
    at.multiselect(key="whatif-blocks-int8").set_value(["16x4"])
    at.number_input(key="whatif-seq-len").set_value(32)
    at.number_input(key="whatif-threads").set_value(1)
    at.multiselect(key="whatif-peers").set_value([])
    at.button(key="whatif-submit").click().run()
    finish_job(at, "whatif")
    assert "TVM dense int8 (estimated)" in {m.label for m in at.metric}
