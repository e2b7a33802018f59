"""Store: quantize to int8, save as PruneBERT-layout or SparseLab HDF5, prove the reload bit-exact."""

from pathlib import Path

import streamlit as st

from core.library.store import default_library
from core.model_source import TASKS
from core.storage.jobs import save_upload
from core.storage.quantization import EMBEDDING_CHOICES
from core.storage.request import DEFAULT_THREADS
from core.storage.store import FORMATS
from ui.charts import latency_bars, size_waterfall
from ui.format import human_bytes
from ui.handoffs import handoff_links
from ui.jobs import job_status, start_job
from ui.models import model_picker

st.title("Store")
st.markdown(
    "The *Saving PruneBERT* method: int8 dynamic quantization of every Linear layer, each weight split "
    "into (scale, zero point, int8 values), the values stored sparse, everything in HDF5 with gzip. "
    "**prunebert** is the notebook's layout; **sparselab** stores the same model with one-byte gap-coded "
    "positions in long streams — smaller, and reloaded to the identical model.")

def compile_settings(model: str) -> tuple[str, str]:
    """(block, precision) for compiling a library model, from the structure of its pruning."""
    entry = default_library().get(model)
    label = (entry.details.get("label") or "") if entry else ""
    block = label.split()[-1] if label.split()[:1] in (["block"], ["random"]) else "1x1"
    return block, "int8" if block.endswith("x4") else "fp32"


save_tab, verify_tab = st.tabs(["Quantize and save", "Verify a file"])

with save_tab:
    with st.form("store"):
        model = model_picker("store", default="minilm")
        cols = st.columns(4)
        fmt = cols[0].radio("Format", list(FORMATS), index=1, horizontal=True, key="store-format")
        embeddings = cols[1].selectbox("Embeddings", EMBEDDING_CHOICES,
                                       help="none: left out (reload takes them from the model source)",
                                       key="store-embeddings")
        task = cols[2].selectbox("Head", TASKS, key="store-task")
        threads = cols[3].number_input("Threads for timing", 1, 64, DEFAULT_THREADS, key="store-threads")
        per_channel = st.toggle("Per-channel int8 scales", help="The notebook used per-tensor; per-channel keeps "
                                "much more fidelity on small models such as MiniLM.", key="store-per-channel")
        if st.form_submit_button("Quantize, save and verify", type="primary", key="store-submit") and model:
            start_job("store", {"model": model, "format": fmt, "per_channel": per_channel, "embeddings": embeddings,
                                "task": task, "threads": int(threads)}, label=f"Storing {model} as {fmt}")

    job = job_status("store")
    if job and job.status == "done":
        stored, result = job.result["stored"], job.result
        cols = st.columns(4)
        cols[0].metric("File", human_bytes(stored["size_bytes"]))
        first = result["waterfalls"]["none"][0]["size_bytes"]
        cols[1].metric("vs fp32 (without embeddings)", f"{result['waterfalls']['none'][-1]['size_bytes'] / first:.1%}")
        cols[2].metric("Reload bit-exact", "yes" if stored["bit_exact"] else "NO")
        cols[3].metric("Load time", f"{stored['load_s'] * 1e3:.0f} ms")
        st.caption(f"{job.params['model']} · {stored['format']} · cache {'hit' if result['cache_hit'] else 'miss'}"
                   + (f" · in the library as {stored['library_name']}" if stored.get("library_name") else ""))
        block, precision = compile_settings(job.params["model"])
        handoff_links(job.params["model"], ("compile", "whatif"), precision=precision, block=block)
        st.caption("Compile this model opens Compile with the kernels that suit its zeros: int8 (VNNI) BSR for "
                   "blocks of 4 input columns (16x4, 4x4, 1x4), fp32 BSR otherwise (an unstructured pruning leaves "
                   "few whole 4-column blocks empty, so int8 would keep its layers dense).")
        left, right = st.columns(2)
        for column, (embeddings_kind, steps) in zip((left, right), result["waterfalls"].items()):
            title = "Without embeddings" if embeddings_kind == "none" else f"With embeddings ({embeddings_kind})"
            column.plotly_chart(size_waterfall(steps, title), width="stretch")
        left, right = st.columns(2)
        left.markdown("**Fidelity of the int8 model** (sentence embeddings on the paraphrase set)")
        left.dataframe([{"against": k.replace("_", " "), **v} for k, v in result["fidelity"].items()],
                       hide_index=True)
        if result["dense_origin"] is None:
            left.caption("The source does not name the dense model it was pruned from, so only int8 vs fp32 is shown.")
        right.plotly_chart(latency_bars(result["latency"], "PyTorch latency, batch 1, seq 128"), width="stretch")
        path = Path(stored["path"])
        if path.is_file():
            st.download_button("Download the .h5", path.read_bytes(), file_name=f"model-{stored['format']}.h5",
                               icon=":material/download:")

with verify_tab:
    with st.form("verify"):
        upload = st.file_uploader("A .h5 model file (SparseLab or PruneBERT layout)", type=["h5", "hdf5"],
                                  key="verify-upload")
        model = model_picker("verify", default="minilm", label="The model source it was made from", url_param=None)
        if st.form_submit_button("Reload and verify", key="verify-submit") and upload is not None and model:
            start_job("store_verify", {"path": str(save_upload(upload.getvalue(), upload.name)), "model": model},
                      label=f"Verifying {upload.name}")
    job = job_status("store_verify")
    if job and job.status == "done":
        verdict = job.result
        (st.success if verdict["bit_exact"] else st.error)(
            f"{verdict['format']} file, {human_bytes(verdict['size_bytes'])}: outputs on {verdict['inputs_checked']} "
            f"random inputs are {'bit-exact' if verdict['bit_exact'] else 'NOT equal'} to the source quantized "
            f"the same way ({verdict['settings']}).")
