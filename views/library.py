"""Library: every model the dashboard knows, where it came from, how good and how fast it is; bring your own."""

import streamlit as st

from core.errors import SparseLabError
from core.library.store import default_library
from core.library.upload import add_upload
from core.settings import Settings
from ui.format import human_bytes, timestamp
from ui.handoffs import handoff_links
from ui.jobs import read_only
from ui.resources import run_store

st.title("Library")
st.markdown("Every model the dashboard knows, by the name every page, command and run uses: the bundled MiniLM, "
            "config-built architectures, and the models uploaded, pruned, recovered or quantized here. Each added "
            "model is a copy the library keeps, so clearing the cache never breaks it.")

library = default_library()
settings = Settings.from_env()

with st.expander("Upload a model", icon=":material/upload:", expanded=False):
    st.markdown(f"A **zipped transformers folder**: `config.json`, weights as `.safetensors` and, optionally, "
                f"tokenizer files. Pickle weights (`.bin`, `.pt`) are refused, and a model's own code never runs. "
                f"At most {human_bytes(settings.max_upload_bytes)}.")
    with st.form("upload", clear_on_submit=True):
        upload = st.file_uploader("Zipped model folder", type=["zip"], key="library-upload",
                                  disabled=read_only())
        submitted = st.form_submit_button("Add to the library", key="library-upload-submit", disabled=read_only())
        if submitted and upload is None:
            st.warning("Choose a zipped model folder first (or wait until its upload has finished), "
                       "then press **Add to the library**.")
        elif submitted:
            try:
                with st.spinner(f"Checking {upload.name}…"):
                    settings.check_upload(upload.size, f"'{upload.name}'")
                    model = add_upload(upload.getvalue(), upload.name, library, settings)
                st.session_state["library-added"] = model.name
            except SparseLabError as exc:
                st.error(f"{upload.name} was not added: {exc}")
if added := st.session_state.get("library-added"):
    st.success(f"Added **{added}** to the library.")
    handoff_links(added, ("prune", "store", "compile", "whatif"))

models = library.entries()
best = library.best_known(run_store(), [m.name for m in models])
table = [{"name": m.name, "kind": m.kind, "from": " ← ".join(library.lineage(m.name)[1:]) or "-",
          "size": human_bytes(m.size_bytes) if m.size_bytes else "-",
          "best fidelity": best[m.name]["fidelity"], "fastest ms": best[m.name]["latency_ms"],
          "added": timestamp(m.created) if m.created else "built in",
          "details": ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                               for k, v in m.details.items() if not isinstance(v, (list, dict)))}
         for m in models]
st.caption(f"{len(models)} models · {library.root}")
picked = st.dataframe(table, hide_index=True, width="stretch", on_select="rerun", selection_mode="single-row",
                      key="library-table", column_config={
                          "best fidelity": st.column_config.NumberColumn(format="%.3f",
                                                                         help="highest accuracy/fidelity of its runs"),
                          "fastest ms": st.column_config.NumberColumn(format="%.1f",
                                                                      help="fastest measured latency (TVM, peers)")})

if picked.selection.rows:
    model = models[picked.selection.rows[0]]
    st.subheader(model.name)
    st.caption(f"{model.kind} · lineage: {' ← '.join(library.lineage(model.name))}")
    if model.loadable:
        handoff_links(model.name, ("prune", "store", "compile", "whatif"))
    elif model.kind == "quantized":
        st.download_button("Download the .h5", open(model.location, "rb").read(), file_name=f"{model.id}.h5",
                           icon=":material/download:", key="library-download")
    if model.id is not None:
        st.caption("Removing deletes the library's copy; runs that name the model keep their records.")
        if st.button("Remove from the library", icon=":material/delete:", key="library-remove",
                     disabled=read_only()):
            library.remove(model.name)
            st.session_state.pop("library-added", None)
            st.rerun()
else:
    st.info("Select a model to see its lineage and hand it to the next step.")
