"""Export: prune Keras models with TF-MOT, convert to TFLite four ways, measure, inspect any .tflite."""

from pathlib import Path

import streamlit as st

from core.errors import SparseLabError
from core.pruning.m_by_n import parse_mn
from core.tflite.inspection import inspect_tflite, weight_heatmap
from core.tflite.options import METHODS, MODELS, VARIANTS
from ui.charts import grouped_bars, nonzero_heatmap
from ui.format import human_bytes
from ui.jobs import job_status, start_job

st.title("Export")
st.markdown("Train a small CNN on scikit-learn's digits, prune copies of it with TensorFlow Model Optimization "
            "(fine-tuned with `UpdatePruningStep`, then `strip_pruning`), convert each to TFLite and run every "
            "file through the interpreter: size, accuracy, latency.")

run_tab, inspect_tab = st.tabs(["Prune and export", "Inspect a .tflite"])

with run_tab:
    with st.form("tflite"):
        cols = st.columns([2, 3])
        model = cols[0].radio("Model", list(MODELS), format_func=lambda m: f"{m} — {MODELS[m].description}",
                              key="tflite-model")
        methods = cols[1].multiselect("Pruning", list(METHODS), default=["constant", "mn"],
                                      help="\n\n".join(f"**{k}**: {v}" for k, v in METHODS.items()),
                                      key="tflite-methods")
        cols = st.columns(4)
        sparsity = cols[0].slider("Target sparsity", 0.3, 0.95, 0.75, 0.05, help="constant, poly and xnnpack",
                                  key="tflite-sparsity")
        mn = cols[1].selectbox("m:n (kept of every n)", ["2:4", "1:4", "4:8"], key="tflite-mn")
        epochs = cols[2].number_input("Epochs (dense)", 1, 50, 8, key="tflite-epochs")
        seed = cols[3].number_input("Seed", 0, 10_000, 0, key="tflite-seed")
        cols = st.columns([3, 1, 1])
        variants = cols[0].multiselect("TFLite variants", list(VARIANTS), default=list(VARIANTS),
                                       help="\n\n".join(f"**{k}**: {v}" for k, v in VARIANTS.items()),
                                       key="tflite-variants")
        threads = cols[1].multiselect("Threads", [1, 2, 4], default=[1, 2], key="tflite-threads")
        repeats = cols[2].number_input("Timing repeats", 10, 2000, 100, key="tflite-repeats")
        if st.form_submit_button("Train, prune, export and measure", type="primary", key="tflite-submit"):
            specs = [f"mn:{mn}" if m == "mn" else f"{m}:{sparsity:g}" for m in methods]
            start_job("tflite", {"model": model, "prune": specs, "export": variants, "epochs": int(epochs),
                                 "seed": int(seed), "threads": threads, "repeats": int(repeats)},
                      label=f"TFLite export of {model}")

    job = job_status("tflite")
    if job and job.status == "done":
        result = job.result
        st.subheader("Keras accuracy on the held-out digits")
        st.dataframe([{"model": label, "accuracy": acc, "weight sparsity": result["weight_sparsity"].get(label)}
                      for label, acc in result["keras_accuracy"].items()], hide_index=True)
        exports = result["exports"]
        for row in exports:
            row["file"] = f"{row['pruning']}/{row['variant']}"
        one_thread = [r for r in exports if r["threads"] == min(r["threads"] for r in exports)]
        left, right = st.columns(2)
        left.plotly_chart(grouped_bars([{**r, "KB": r["size_bytes"] / 1e3} for r in one_thread], "pruning", "KB",
                                       "variant", "File size", "KB"), width="stretch")
        right.plotly_chart(grouped_bars([{**r, "us": r["latency_ms"] * 1e3, "std": r["latency_std_ms"] * 1e3}
                                         for r in exports], "file", "us", "threads",
                                        "Interpreter latency (median, XNNPACK default)", "µs", error="std"),
                           width="stretch")
        for verdict in result["sparse_verdicts"]:
            (st.success if verdict["faster"] else st.info)(f"**{verdict['prune']}**: {verdict['explanation']}")
        st.dataframe([{k: r[k] for k in ("file", "size_bytes", "accuracy", "latency_ms", "latency_std_ms", "threads")}
                      for r in exports], hide_index=True, width="stretch")
        files = {r["file"]: r["path"] for r in one_thread if Path(r["path"]).is_file()}
        if files:
            cols = st.columns([2, 1])
            chosen = cols[0].selectbox("Download a file", list(files), key="tflite-download-file")
            cols[1].download_button("Download .tflite", Path(files[chosen]).read_bytes(),
                                    file_name=f"{result['model']}-{chosen.replace('/', '-').replace(':', '')}.tflite",
                                    icon=":material/download:")
            st.session_state["tflite-produced"] = files

with inspect_tab:
    produced = st.session_state.get("tflite-produced", {})
    upload = st.file_uploader("A .tflite file", type=["tflite"], key="inspect-upload")
    chosen = st.selectbox("…or one produced above", ["", *produced], key="inspect-produced") if produced else ""
    mn_text = st.text_input("Check m:n in the last dimension", "2:4", key="inspect-mn")
    data = upload.getvalue() if upload else (Path(produced[chosen]).read_bytes() if chosen else None)
    if data:
        try:
            report = inspect_tflite(data, parse_mn(mn_text) if mn_text.strip() else None)
        except SparseLabError as exc:
            st.error(str(exc))
        else:
            st.caption(f"{human_bytes(report.size_bytes)} · {len(report.tensors)} weight tensors · "
                       f"m:n {mn_text} holds in {len(report.mn_holding())}")
            st.dataframe([{**t.as_dict(), "mn": (t.mn.holds if t.mn else None)} for t in report.tensors],
                         hide_index=True, width="stretch")
            name = st.selectbox("Heatmap of", [t.name for t in report.tensors], key="inspect-heatmap")
            tensor = report.tensor(name)
            view = weight_heatmap(tensor, n=parse_mn(mn_text)[1] if mn_text.strip() else None)
            st.plotly_chart(nonzero_heatmap(view.mask, view.row_start, view.col_start, view.row_lines,
                                            view.col_lines, f"{name}: nonzero = dark, m:n groups in red"),
                            width="stretch")
