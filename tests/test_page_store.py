"""The Store page end to end: submit the form, the real job runs, the results render."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

from core.jobs import default_runner

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def test_store_page_runs_a_job_and_shows_results():
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page("pages/store.py").run()
    at.selectbox(key="store-model").select("bert-tiny")
    at.number_input[0].set_value(1)
    at.button[0].click().run()  # the form's submit button
    assert not at.exception
    [job] = default_runner().list(name="store")
    assert default_runner().wait(job.id, timeout_s=600).status == "done"
    at.run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Reload bit-exact"] == "yes"
    assert len(at.get("plotly_chart")) == 3
