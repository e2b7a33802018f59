"""The Compile page end to end on bert-tiny: a real TVM compile of dense and BSR models, timed."""

import pytest

from core.jobs import default_runner
from tests.pages import finish_job, open_page

pytestmark = pytest.mark.slow  # a real TVM compile job


def test_compile_page_compiles_and_shows_results():
    at = open_page("views/compile.py")
    at.selectbox(key="tvm-model").select("bert-tiny")
    at.number_input(key="tvm-seq-len").set_value(32)
    at.number_input(key="tvm-threads").set_value(1)
    at.number_input(key="tvm-repeats").set_value(5)
    at.toggle(key="tvm-sweep").set_value(False)  # no kernel sweep
    at.multiselect(key="tvm-peers").set_value(["onnxruntime-int8"])  # one peer beside PyTorch eager: quick
    at.button(key="tvm-submit").click().run()
    finish_job(at, "tvm")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Matches PyTorch"] == "yes"
    assert metrics["Converted to BSR"] == "12/12"
    assert len(at.get("plotly_chart")) == 1
    assert metrics["Fastest dense engine"].endswith(" ms") and "than" in at.metric[0].delta  # vs the best peer
    job = default_runner().list(name="tvm")[0]
    assert {row["engine"] for row in job.result["peers"]} == {"pytorch", "onnxruntime-int8"}
