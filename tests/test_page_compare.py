from core.run_store import RunRecord, default_store
from tests.pages import open_page


def test_compare_page_plots_filters_and_marks_the_front():
    store = default_store()
    store.add(RunRecord(kind="tflite", model="digits-cnn", method="mn", sparsity=0.5, block="2:4",
                        size_bytes=229_088, latency_ms=0.012, accuracy=0.98))
    store.add(RunRecord(kind="tflite", model="digits-cnn", method="constant", sparsity=0.5,
                        size_bytes=352_128, latency_ms=0.013, accuracy=0.97))  # dominated by the first
    store.add(RunRecord(kind="prune", model="minilm", method="magnitude", sparsity=0.9, accuracy=0.81))
    at = open_page("views/compare.py")
    assert len(at.get("plotly_chart")) == 1
    table = at.dataframe[0].value
    assert list(table.sort_values("size_bytes")["pareto"].head(2)) == [True, False]
    at.multiselect(key="compare-models").set_value(["minilm"]).run()
    assert "1 of 3 runs" in at.caption[0].value
