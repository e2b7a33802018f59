"""The Store page end to end: submit the form, the real job runs, the results render."""

import pytest

from tests.pages import finish_job, open_page

pytestmark = pytest.mark.slow  # a real store job


def test_store_page_runs_a_job_and_shows_results():
    at = open_page("views/store.py")
    at.selectbox(key="store-model").select("bert-tiny")
    at.number_input(key="store-threads").set_value(1)
    at.button(key="store-submit").click().run()
    at.button(key="store-submit").click().run()  # submitted again while it runs: no second job
    finish_job(at, "store")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Reload bit-exact"] == "yes"
    assert len(at.get("plotly_chart")) == 3
