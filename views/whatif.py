"""What-if: how fast and how big would this model be if it were pruned, in seconds, from measured kernels."""

import streamlit as st

from core.peers import engines
from core.pruning.block import format_block
from core.tvm.bsr_rewrite import PRECISIONS
from core.whatif.accuracy import past_accuracy
from core.whatif.request import DEFAULT_BLOCKS_BY_PRECISION, WhatIfRequest
from core.whatif.rest_of_model import REST_SPARSITY
from ui.charts import whatif_latency, whatif_sizes
from ui.jobs import job_status, start_job
from ui.models import model_picker
from ui.resources import run_store

DEFAULTS = WhatIfRequest()
SPARSITIES = list(DEFAULTS.sparsities)
BLOCKS = {precision: [format_block(block) for block in blocks]
          for precision, blocks in DEFAULT_BLOCKS_BY_PRECISION.items()}
PEERS = list(engines.ENGINES)

st.title("What-if")
st.markdown("An estimate of the whole model's TVM latency for each sparsity and block shape, without compiling "
            "the model: the BSR and dense kernels are timed for every distinct Linear shape on this CPU (cached), "
            "scaled by how each ran inside one real compile of the model, and the measured time of the "
            "rest of the model is added. Each estimate carries an error bar; check "
            "any point with a real whole-model compile. Times are the median of the quiet runs (the fastest quarter "
            "of runs spread over seconds): on a shared machine other work only ever slows runs down. Cached parts "
            "are scaled to the machine's speed now by a reference kernel timed beside each of them. The dense "
            "engines you would run instead (ONNX Runtime, OpenVINO, PyTorch) are measured once per model and shape "
            "and drawn as lines.")

precision = st.radio("Precision", PRECISIONS, horizontal=True, key="whatif-precision",
                     help="int8: int8 weights (per output row) x activations quantised per token at run time, "
                          "VNNI kernels "
                          "(AMX tiles for 16x4 and dense on CPUs that have them); "
                          "blocks of 4 input columns")
with st.form("whatif"):
    cols = st.columns([2, 3, 3])
    with cols[0]:
        model = model_picker("whatif", default=DEFAULTS.model)
    sparsities = cols[1].multiselect("Sparsities", SPARSITIES, default=SPARSITIES, key="whatif-sparsities")
    blocks = cols[2].multiselect("Blocks", BLOCKS[precision], default=BLOCKS[precision],
                                 key="whatif-blocks" if precision == "fp32" else f"whatif-blocks-{precision}")
    cols = st.columns(4)
    seq_len = cols[0].number_input("Sequence length", 8, 512, DEFAULTS.seq_len, step=8, key="whatif-seq-len")
    threads = cols[1].number_input("Threads", 1, 64, DEFAULTS.threads, key="whatif-threads")
    peers = cols[2].multiselect("Dense engines to compare with", PEERS, default=PEERS, key="whatif-peers",
                                help="Measured once per model, shape and threads (the first time takes minutes: "
                                     "ONNX export, NNCF quantisation), then cached.")
    if st.form_submit_button("Estimate", type="primary", key="whatif-submit") and model and sparsities and blocks:
        start_job("whatif", {"model": model, "sparsities": sorted(sparsities), "blocks": blocks,
                             "seq_len": int(seq_len), "threads": int(threads), "precision": precision,
                             "peers": ",".join(peers) or "none"}, label=f"What-if for {model} ({precision})")

job = job_status("whatif")
if job and job.status == "done":
    result = job.result
    precision_label = result.get("precision", "fp32")
    best_peer = result.get("best_peer")
    cols = st.columns(4)
    if best_peer:
        cols[0].metric("Fastest peer (measured)", f"{result['best_peer_ms']:.1f} ms", best_peer, delta_color="off")
    else:
        cols[0].metric("PyTorch eager dense (measured)", f"{result['torch_dense_ms']:.1f} ms")
    cols[1].metric(f"TVM dense {precision_label} (estimated)",
                   f"{result['dense_ms']:.1f} ± {result['dense_error_ms']:.1f} ms")
    best = min(result["estimates"], key=lambda e: e["estimate_ms"])
    if best_peer:
        faster = best["speedup_vs_best_peer"]
        cols[2].metric("Fastest estimate", f"{best['estimate_ms']:.1f} ms",
                       f"{faster:.2f}x {'faster' if faster >= 1 else 'slower'} than {best_peer} "
                       f"({best['block']} at {best['sparsity']:g})", delta_color="normal" if faster >= 1 else "inverse")
    else:
        cols[2].metric("Fastest estimate", f"{best['estimate_ms']:.1f} ms", f"{best['block']} at {best['sparsity']:g}",
                       delta_color="off")
    cols[3].metric("Answered in", f"{result['seconds']:.1f} s", "from cache" if result["cache_hit"] else "measured now",
                   delta_color="off")
    speedup = st.toggle("Show speedup over the fastest peer" if best_peer else "Show speedup over PyTorch",
                        key="whatif-speedup")
    st.plotly_chart(whatif_latency(result["estimates"], result["torch_dense_ms"], speedup, result.get("peers")),
                    width="stretch")
    for skipped in result.get("skipped_peers") or []:
        st.caption(f"Peer {skipped['engine']} not measured: {skipped['reason']}")
    st.plotly_chart(whatif_sizes(result["sizes"]), width="stretch")
    for note in result["notes"]:
        st.caption(note)
    if result.get("in_model"):
        factors = result["in_model"].values()
        st.caption(f"Kernel times measured alone are scaled by each kernel's time inside one compile of the model "
                   f"(at {REST_SPARSITY:g} sparsity) over its time alone: x{min(factors):.2f} to "
                   f"x{max(factors):.2f} over {len(result['in_model'])} kernels.")

    st.subheader("Check an estimate with a real compile")
    with st.form("whatif-check"):
        cols = st.columns(3)
        point = cols[0].selectbox("Point", result["estimates"], key="whatif-check-point", format_func=lambda e: (
            f"{e['block']} at {e['sparsity']:g}: {e['estimate_ms']:.1f} ± {e['error_ms']:.1f} ms"))
        repeats = cols[1].number_input("Timing repeats", 5, 200, 20, key="whatif-check-repeats")
        if st.form_submit_button("Compile the whole model and measure", key="whatif-check-submit"):
            start_job("whatif_check", {"model": result["model"], "sparsity": point["sparsity"], "block": point["block"],
                                       "seq_len": result["seq_len"], "threads": result["threads"],
                                       "precision": precision_label, "repeats": int(repeats)},
                      label=f"Checking {point['block']} at {point['sparsity']:g}")
    check = job_status("whatif_check")
    if check and check.status == "done":
        pair = check.result
        (st.success if pair["within_error_bar"] else st.warning)(
            f"{pair['block']} at {pair['sparsity']:g}: "
            f"estimated {pair['estimate_ms']:.1f} ± {pair['error_ms']:.1f} ms, "
            f"measured {pair['measured_ms']:.1f} ms ({pair['rel_error']:+.1%}; quiet runs, median of all "
            f"{pair['measured_median_ms']:.1f} ms). The estimate is moved to the check's moment by the reference "
            f"kernel (x{pair.get('drift_factor', 1.0):.3f}; without any drift scaling "
            f"{pair.get('unscaled_rel_error', pair['rel_error']):+.1%}).")

    history = past_accuracy(run_store(), model=result["model"])
    if history["count"]:
        st.subheader("How accurate past estimates were")
        cols = st.columns(3)
        cols[0].metric("Checks", history["count"])
        cols[1].metric("Median |error|", f"{history['median_abs_rel_error']:.1%}")
        cols[2].metric("Within the error bar", f"{history['within_error_bar']:.0%}")
        st.dataframe(history["pairs"], hide_index=True, width="stretch")
