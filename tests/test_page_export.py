"""The Export page end to end: a real (small) TF-MOT + TFLite job, its results, and inspection."""

import pytest

from tests.pages import finish_job, open_page

pytestmark = pytest.mark.slow  # a real TF-MOT training and TFLite conversion job


def test_export_page_runs_and_inspects():
    at = open_page("views/export.py", timeout=180)
    at.multiselect(key="tflite-methods").set_value(["mn"])
    at.number_input(key="tflite-epochs").set_value(2)
    at.multiselect(key="tflite-variants").set_value(["float", "sparse"])
    at.multiselect(key="tflite-threads").set_value([1])
    at.number_input(key="tflite-repeats").set_value(10)
    at.button(key="tflite-submit").click().run()
    finish_job(at, "tflite")
    assert len(at.get("plotly_chart")) == 2
    verdicts = [m.value for m in at.info] + [m.value for m in at.success]
    assert any("mn:2:4" in v and "smaller" in v for v in verdicts)

    at.selectbox(key="inspect-produced").select("mn:2:4/sparse").run()  # inspect a produced file
    assert not at.exception, [e.message for e in at.exception]
    table = at.dataframe[-1].value
    assert table["stored_sparse"].any() and table["mn"].any()
    assert len(at.get("plotly_chart")) == 3
