"""Compile: a transformer through TVM with Block Sparse Row kernels, against PyTorch on the same cores."""

import streamlit as st

from core.library.store import default_library
from core.peers import engines
from core.pruning.block import format_block
from core.tvm.bsr_rewrite import BSR_BLOCKS
from core.tvm.request import DEFAULT_MODEL, WHATIF_BLOCK, TvmRequest
from ui.charts import latency_bars, speedup_sweep
from ui.jobs import job_status, start_job
from ui.models import model_picker
from ui.navigation import page
from ui.state import keep_in_url, url_index, url_value

BLOCKS = [format_block(block) for block in BSR_BLOCKS] + ["16x4", "4x4", "1x4"]  # x4: the int8 (VNNI) kernels
PEERS = list(engines.ENGINES)
PRECISIONS = ["fp32", "int8"]
SPARSE_KINDS = ["what-if random", "prune now", "pruned folder"]
PRUNED = [m.name for m in default_library().entries(loadable_only=True) if m.kind in ("pruned", "recovered")]
DEFAULTS = TvmRequest()

st.title("Compile")
st.markdown("The TVM *deploy_sparse* idea rebuilt for TVM 0.27 (Relax, no Relay, no sparse ops): the model is "
            "exported with `torch.export`, imported into Relax, every Linear whose weight is sparse enough "
            "becomes a hand-scheduled Block Sparse Row kernel (fp32, or int8 on VNNI or AMX tiles), the rest gets "
            "real CPU schedules, and the library is cached. It is timed against what you would run instead: "
            "PyTorch eager, ONNX Runtime and OpenVINO, fp32 and int8, each in a process of its own, in interleaved "
            "rounds on the same threads; the headline is against the fastest of them.")

with st.form("tvm"):
    cols = st.columns(3)
    with cols[0]:
        model = model_picker("tvm", default=DEFAULT_MODEL, label="Dense model")
    weights = cols[1].radio("Sparse weights", SPARSE_KINDS, key="tvm-weights",
                            index=url_index("sparse", SPARSE_KINDS, SPARSE_KINDS[0]),
                            help="what-if: random block-sparse weights at a sparsity, to see how fast the model "
                                 "would be if it were pruned; prune now: magnitude/block pruning of the model; "
                                 "pruned folder: a pruned model of the library (also the dense baseline).")
    with cols[2]:
        folder = model_picker("tvm-weights", default=url_value("weights", PRUNED[0] if PRUNED else "minilm"),
                              label="Pruned model (for 'pruned folder')", url_param=None)
    cols = st.columns(4)
    sparsity = cols[0].slider("Sparsity", 0.5, 0.99, 0.9, 0.01, key="tvm-sparsity")
    block = cols[1].selectbox("BSR block", BLOCKS, key="tvm-block",
                              index=url_index("block", BLOCKS, WHATIF_BLOCK))
    method = cols[2].selectbox("Pruning (prune now)", ["magnitude", "block"], key="tvm-method")
    threshold = cols[3].slider("Convert layers at least this sparse", 0.0, 0.99, DEFAULTS.threshold, 0.01,
                               key="tvm-threshold")
    cols = st.columns(4)
    seq_len = cols[0].number_input("Sequence length", 8, 512, DEFAULTS.seq_len, step=8, key="tvm-seq-len")
    threads = cols[1].number_input("Threads", 1, 64, 2, key="tvm-threads")
    repeats = cols[2].number_input("Timing repeats", 5, 200, DEFAULTS.repeats, key="tvm-repeats")
    precision = cols[3].radio("Precision", PRECISIONS, horizontal=True, key="tvm-precision",
                              index=url_index("precision", PRECISIONS, "fp32"),
                              help="int8: int8 weights (per output channel) x activations quantized per token at "
                                   "run time, VNNI or AMX kernels; on an AMX CPU attention's matmuls run in bf16 "
                                   "there, as OpenVINO's int8 model does; pick an x4 block for the sparse build")
    cols = st.columns([3, 1])
    peers = cols[0].multiselect("Dense engines to beat", PEERS, default=PEERS, key="tvm-peers",
                                help="PyTorch eager is always timed. OpenVINO default runs bf16 on this CPU.")
    with cols[1]:
        tune = st.toggle("Tune BSR schedules", help="Measure the schedule candidates per layer shape (cached).",
                         key="tvm-tune")
        sweep = st.toggle("Block-shape sweep", value=True, help="One 768x768 layer over blocks x sparsities.",
                          key="tvm-sweep")
    keep_in_url(sparse=weights, weights=folder if weights == "pruned folder" else None, precision=precision)
    if st.form_submit_button("Compile and benchmark", type="primary", key="tvm-submit") and model:
        params = {"model": model, "block": block, "threshold": threshold, "seq_len": int(seq_len),
                  "threads": int(threads), "repeats": int(repeats), "tune": tune, "sweep": sweep,
                  "precision": precision, "peers": ",".join(peers) or "none"}
        params.update({"what-if random": {"whatif": sparsity}, "prune now": {"prune": f"{method}:{sparsity}"},
                       "pruned folder": {"weights": folder.strip()}}[weights])
        start_job("tvm", params, label=f"Compiling {model} ({weights})")

job = job_status("tvm")
if job and job.status == "done":
    result = job.result
    best = result.get("best_peer")
    cols = st.columns(5)
    if best:
        faster = result["speedup_vs_best_peer"]
        cols[0].metric("TVM sparse", f"{result['tvm_sparse_ms']:.1f} ms",
                       f"{faster:.2f}x {'faster' if faster >= 1 else 'slower'} than {best}",
                       delta_color="normal" if faster >= 1 else "inverse",
                       help="against the fastest dense engine timed in this run")
        cols[1].metric("Fastest dense engine", f"{result['best_peer_ms']:.1f} ms", best, delta_color="off")
    cols[2].metric("TVM dense", f"{result['tvm_dense_ms']:.1f} ms",
                   f"PyTorch eager {result['torch_dense_ms']:.1f} ms", delta_color="off")
    cols[3].metric("Converted to BSR", f"{result['converted_layers']}/{result['total_layers']}")
    cols[4].metric("Matches PyTorch", "yes" if result["allclose"] else "NO",
                   f"cosine {result['cosine_vs_fp32']:.4f}" if result.get("cosine_vs_fp32") is not None
                   else f"max error {result['max_abs_error']:.1e}", delta_color="off", help=result["allclose_rule"])
    attention = " · attention matmuls bf16 (AMX)" if result.get("attention_precision") == "bf16" else ""
    st.caption(f"{result['model']} · {result['precision']}{attention} · block {result['block']} · "
               f"seq {result['seq_len']} · "
               f"{result['threads']} threads · every engine timed in its own process, rounds interleaved (the host "
               f"is shared: compare ratios from one run) · compile {result['compile_s']:.1f} s (dense "
               f"{result['dense_compile_s']:.1f} s) · cache {'hit' if result['cache_hit'] else 'miss'} · peak memory "
               f"{result['peak_rss_mb']:.0f} MB")
    st.page_link(page("compare").path, label="Compare these runs", icon=page("compare").material_icon,
                 query_params={"model": result["model"]})
    for skipped in result.get("skipped_peers") or []:
        st.caption(f"Not measured: {skipped['engine']}: {skipped['reason']}")
    left, right = st.columns(2)
    bars = {f"{row['engine']} ({row['precision']})": {"median_ms": row["ms"], "p10_ms": row["p10_ms"],
                                                      "p90_ms": row["p90_ms"]}
            for row in sorted(result["peers"], key=lambda row: -row["ms"])}
    bars.update({f"TVM dense ({result['precision']})": result["timings"]["tvm_dense"],
                 f"TVM sparse ({result['precision']})": result["timings"]["tvm_sparse"]})
    left.plotly_chart(latency_bars(bars, f"Whole model, batch 1, seq {result['seq_len']}"), width="stretch")
    if result.get("sweep"):
        right.plotly_chart(speedup_sweep(result["sweep"], "One 768x768 layer: BSR kernel vs PyTorch dense"),
                           width="stretch")
    if result["unscheduled"]:
        st.warning(f"Functions left without a schedule (slow loops): {', '.join(result['unscheduled'])}")
    with st.expander("Which layers became BSR"):
        st.dataframe(result["layers"], hide_index=True, width="stretch")
