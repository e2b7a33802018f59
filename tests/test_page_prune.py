"""The Prune page end to end: a real pruning job and a real sweep, then the charts."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

from core.jobs import default_runner

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def _finish(at: AppTest, name: str) -> None:
    [job] = default_runner().list(name=name)
    job = default_runner().wait(job.id, timeout_s=600)
    assert job.status == "done", job.error
    at.run()
    assert not at.exception, [e.message for e in at.exception]


def test_prune_page_prunes_and_sweeps():
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page("pages/prune.py").run()
    at.selectbox(key="prune-model").select("bert-tiny")
    at.slider[0].set_value(0.5)
    at.button[0].click().run()
    _finish(at, "prune")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Sparsity of pruned layers"] == "50.0%"
    assert len(at.get("plotly_chart")) == 2  # layer bars and heatmap; no sweep yet

    at.selectbox(key="sweep-model").select("bert-tiny")
    at.multiselect[0].set_value(["magnitude"])
    at.multiselect[1].set_value([0.0, 0.5])
    at.button[1].click().run()
    _finish(at, "prune_sweep")
    assert len(at.get("plotly_chart")) == 3
