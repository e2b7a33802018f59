"""Demo: the whole pipeline on MiniLM in one click, summarised on one card with a link to every step."""

import streamlit as st

from core.demo.request import DemoRequest
from ui.format import human_bytes, timestamp
from ui.handoffs import handoff_links
from ui.jobs import job_status, start_job
from ui.navigation import page

DEFAULTS = DemoRequest()

st.title("Demo")
st.markdown(f"One button runs SparseLab's pipeline on **{DEFAULTS.model}**, the real pretrained MiniLM-L6: prune "
            f"{DEFAULTS.sparsity:.0%} of its encoder weights ({DEFAULTS.method}), store it as int8 in SparseLab's "
            f"sparse layout, compile it with TVM to Block Sparse Row kernels, and measure the dense engines a user "
            f"would otherwise run (ONNX Runtime, OpenVINO, fp32 and int8) on the same {DEFAULTS.threads} threads. "
            "Every step reuses what is cached; a finished demo is kept, so the next visitor sees it at once.")

if st.button("Run the demo", type="primary", icon=":material/play_arrow:", key="demo-run"):
    start_job("demo", DEFAULTS.as_params(), label=f"Demo on {DEFAULTS.model}")

job = job_status("demo")
if job and job.status == "done":
    card = job.result
    with st.container(border=True):
        st.subheader(f"{card['model']}, {card['sparsity']:.0%} sparse")
        cols = st.columns(3)
        cols[0].metric("Size", human_bytes(card["stored_bytes"]), f"{card['size_reduction']:.1f}x smaller",
                       help=f"fp32 {human_bytes(card['dense_bytes'])} → int8 sparse file")
        cols[1].metric("Fidelity (mean cosine vs dense)", f"{card['mean_cosine']:.3f}",
                       f"retrieval {card['retrieval_accuracy']:.0%}", delta_color="off",
                       help="sentence embeddings on 72 paraphrase pairs written for the project")
        faster = card["speedup_vs_fastest_peer"]
        cols[2].metric("Latency, TVM sparse", f"{card['tvm_sparse_ms']:.1f} ms",
                       f"{faster:.2f}x vs {card['fastest_peer']} ({card['fastest_peer_ms']:.1f} ms)",
                       delta_color="normal" if faster >= 1 else "inverse",
                       help="against the fastest dense engine measured in this demo")
        st.caption(f"PyTorch eager {card['torch_dense_ms']:.1f} ms · TVM dense {card['tvm_dense_ms']:.1f} ms · "
                   + " · ".join(f"{p['engine']} {p['ms']:.1f} ms" for p in card["peers"])
                   + f" · measured {timestamp(card['measured_at'])}"
                   + (" (from the cache)" if card["cache_hit"] else ""))
        if card["mean_cosine"] is not None and card["mean_cosine"] < 0.6:
            st.warning("One-shot pruning at this sparsity costs fidelity: recovery (distillation) is what makes a "
                       "90% model usable.")
        st.caption(card["note"])
        for skipped in card.get("skipped_peers") or []:
            st.caption(f"Not measured: {skipped['engine']}: {skipped['reason']}")
    st.markdown("**Each step, on its page:**")
    handoff_links(card["library_name"], ("prune", "store", "compile", "whatif"), seq_len=card["request"]["seq_len"],
                  threads=card["request"]["threads"])
    st.page_link(page("compare").path, label="Compare every run", icon=page("compare").material_icon,
                 query_params={"model": card["library_name"]})
