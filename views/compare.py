"""Compare: every run on one screen, the trade-offs worth having, and runs side by side."""

import streamlit as st

from core.compare.models import model_points
from core.compare.pareto import pareto_front
from core.library.store import default_library
from core.run_store import flat_row, rows_to_csv
from ui.charts import metric_bars, tradeoff_scatter
from ui.format import timestamp
from ui.resources import run_store
from ui.state import keep_in_url, url_list

st.title("Compare")
store = run_store()

points = [p for p in model_points(store, default_library()) if p["accuracy"] is not None]
if points:
    with st.expander(f"One point per model: fidelity, fastest latency and smallest file, joined ({len(points)} "
                     "models)", expanded=True, icon=":material/hub:"):
        st.caption("A pruning measures fidelity, a compile latency, a store size: here each pruned or recovered "
                   "model gets all three, beside the dense model it came from (its fastest dense engine). Only "
                   "models with all three are placed on the front.")
        placed = [{**p, "id": i, "method": p["engine"], "block": None} for i, p in enumerate(points)]
        model_front = pareto_front(placed)
        st.plotly_chart(tradeoff_scatter(placed, model_front), width="stretch", key="compare-models-chart")
        st.dataframe([{k: p[k] for k in ("model", "kind", "parent", "sparsity", "accuracy", "latency_ms", "engine",
                                          "size_bytes")} | {"pareto": front}
                      for p, front in zip(points, model_front)], hide_index=True, width="stretch")
cols = st.columns(6)
kinds = cols[0].multiselect("Kind", store.distinct("kind"), key="compare-kinds")
known_models = store.distinct("model")
models = cols[1].multiselect("Model", known_models, key="compare-models",
                             default=url_list("model", [], choices=known_models))
keep_in_url(model=models)
methods = cols[2].multiselect("Method", store.distinct("method"), key="compare-methods")
blocks = cols[3].multiselect("Block / pattern", store.distinct("block"), key="compare-blocks")
machines = cols[4].multiselect("Machine", store.distinct("machine"), key="compare-machines",
                               help="Latencies compare only within one machine")
sparsity = cols[5].slider("Sparsity", 0.0, 1.0, (0.0, 1.0), 0.01, key="compare-sparsity")
rows = store.summary_rows(kinds=kinds, models=models, methods=methods, blocks=blocks, machines=machines,
                          sparsity=None if sparsity == (0.0, 1.0) else sparsity)
st.caption(f"{len(rows)} of {store.count()} runs")

if not rows:
    st.info("No runs match: measure something on Prune, Store, Export or Compile first.")
    st.stop()

on_front = pareto_front(rows)
st.plotly_chart(tradeoff_scatter(rows, on_front), width="stretch")
st.caption(f"{sum(on_front)} runs on the Pareto front: none of the others is smaller, faster and at least as "
           "accurate as them. Runs without a size, a latency or an accuracy are not placed on it.")

table = [{**row, "created": timestamp(row["created"]), "pareto": front} for row, front in zip(rows, on_front)]
picked = st.dataframe(table, hide_index=True, width="stretch", on_select="rerun", selection_mode="multi-row",
                      key="compare-table", height=320)
st.download_button("Download these runs (CSV)", rows_to_csv(table),
                   file_name="sparselab-compare.csv", mime="text/csv", icon=":material/download:")

chosen = [rows[i] for i in picked.selection.rows][:4]
st.subheader("Side by side")
if len(chosen) < 2:
    st.info("Select 2 to 4 runs in the table to compare them side by side.")
else:
    records = {r.id: flat_row(r) for r in store.query(ids=[c["id"] for c in chosen])}
    fields = list(dict.fromkeys(k for c in chosen for k in records[c["id"]]))
    st.dataframe([{"field": f, **{f"#{c['id']}": str(records[c["id"]].get(f, "")) for c in chosen}} for f in fields],
                 hide_index=True, width="stretch")
    cols = st.columns(3)
    for column, (metric, title) in zip(cols, (("size_bytes", "Size (bytes)"), ("latency_ms", "Latency (ms)"),
                                              ("accuracy", "Accuracy / fidelity"))):
        column.plotly_chart(metric_bars(chosen, metric, title), width="stretch")
