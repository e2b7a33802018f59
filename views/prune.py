"""Prune: prune a transformer's Linear layers, see what it did, and what it cost in fidelity."""

import streamlit as st

from core.model_source import TASKS
from core.pruning.apply import DEFAULT_BLOCK, DEFAULT_MN, METHODS
from core.pruning.block import BLOCK_CHOICES, parse_block
from core.pruning.selection import linear_layers
from core.pruning.session import DEFAULT_MODEL
from core.pruning.stats import heatmap, layer_sparsities
from core.pruning.sweep import METHOD_SPEC_CHOICES, METHOD_SPECS, SPARSITIES, SPARSITY_CHOICES, recorded_curves
from ui.charts import fidelity_curves, layer_sparsity_bars, nonzero_heatmap, sensitivity_heatmap
from ui.format import FIDELITY_SCORES, fidelity_scores
from ui.handoffs import handoff_links
from ui.jobs import job_status, start_job
from ui.models import loaded_model, model_picker
from ui.resources import run_store

BLOCKS = list(BLOCK_CHOICES)
MN_CHOICES = ["2:4", "1:4", "4:8", "1:2"]
RECOVERY_STARTS = {"magnitude": ("magnitude", "uniform"), "sparsegpt": ("sparsegpt", "uniform"),
                   "sparsegpt per-layer": ("sparsegpt", "sensitivity")}  # label -> (method, allocation)

st.title("Prune")
st.markdown("Magnitude (per layer or global), whole blocks of *rows x columns*, m:n along the input "
            "dimension, or random what-if block-sparse weights for speed estimates. Embeddings, pooler "
            "and heads stay dense unless layer patterns say otherwise.")

with st.form("prune"):
    cols = st.columns(3)
    with cols[0]:
        model = model_picker("prune", default=DEFAULT_MODEL)
    method = cols[1].selectbox("Method", METHODS, key="prune-method")
    sparsity = cols[2].slider("Sparsity", 0.0, 0.99, 0.9, 0.01, help="Ignored by m:n, which fixes its own.",
                              key="prune-sparsity")
    cols = st.columns(4)
    block = cols[0].selectbox("Block (rows x cols)", BLOCKS, index=BLOCKS.index(DEFAULT_BLOCK),
                              help="For block and random; also the block whose sparsity the bars report.",
                              key="prune-block")
    mn = cols[1].selectbox("m:n", MN_CHOICES, index=MN_CHOICES.index(DEFAULT_MN), key="prune-mn")
    scope = cols[2].radio("Threshold", ["layer", "global"], horizontal=True, key="prune-scope")
    task = cols[3].selectbox("Head", TASKS, key="prune-task")
    patterns = st.text_input("Layers to prune (patterns, space-separated)",
                             placeholder="default: the Linears of the repeated blocks",
                             help="glob (*attention*), plain word (intermediate) or re:REGEX", key="prune-patterns")
    if st.form_submit_button("Prune and measure", type="primary", key="prune-submit") and model:
        start_job("prune", {"model": model, "task": task, "method": method,
                            "sparsity": None if method == "mn" else sparsity, "block": block, "mn": mn,
                            "scope": scope, "patterns": patterns.split() or None},
                  label=f"Pruning {model}: {method}")

job = job_status("prune")
if job and job.status == "done":
    result = job.result
    fidelity = result.get("fidelity") or {}  # as core.pruning.jobs reads it: a summary may hold None
    scores = fidelity_scores(fidelity)[:3]  # encoders: cosines and retrieval; decoders: next tokens, perplexity
    cols = st.columns(4)
    cols[0].metric("Sparsity of pruned layers", f"{result['sparsity']:.1%}")
    for col, (_key, label, value) in zip(cols[1:], scores):
        col.metric(label, value)
    if not scores:
        cols[1].metric("Fidelity vs dense", "-")
    if fidelity.get("note"):
        st.caption(fidelity["note"])
    st.caption(f"The pruned model is in the library as **{result['library_name']}**"
               + (" · from the cache" if result["cache_hit"] else ""))
    handoff_links(result["library_name"], ("store", "compile", "whatif"),
                  block=result["pattern"] if "x" in (result.get("pattern") or "") else "1x1")

    pruned = loaded_model(result["folder"])
    stats_block = st.selectbox("Block shape for the block-sparsity bars", BLOCKS, index=BLOCKS.index(result["block"])
                               if result["block"] in BLOCKS else 0,
                               key=f"prune-stats-block-{result['block']}")  # a new job's block resets it
    layers = [l.as_dict() for l in layer_sparsities(pruned, parse_block(stats_block))]
    st.plotly_chart(layer_sparsity_bars(layers, stats_block), width="stretch")

    st.subheader("Weight pattern")
    weights = linear_layers(pruned)
    cols = st.columns(4)
    layer = cols[0].selectbox("Layer", list(weights), index=next(
        (i for i, name in enumerate(weights) if "encoder." in name), 0), key="prune-layer")
    out_features, in_features = weights[layer].weight.shape
    row = cols[1].number_input("First row", 0, out_features - 1, 0, step=16, key="prune-first-row")
    col = cols[2].number_input("First column", 0, in_features - 1, 0, step=16, key="prune-first-column")
    size = cols[3].select_slider("Window", [16, 32, 64, 128], 64, key="prune-window")
    view = heatmap(weights[layer].weight, parse_block(stats_block), int(row), int(col), size, size)
    st.plotly_chart(nonzero_heatmap(view.mask, view.row_start, view.col_start, view.row_lines, view.col_lines,
                                    f"{layer}: nonzero = dark, {stats_block} blocks in red"), width="stretch")

st.divider()
st.subheader("Recover by distillation")
st.markdown("One-shot pruning at 80-90% breaks a model. Recovery prunes gradually toward the target (a cubic "
            "schedule) while the pruned model learns to reproduce the dense one's sentence embeddings and hidden "
            "states on the project's training sentences (never the evaluation pairs); masks hold throughout. It "
            "runs on the CPU as a job, checkpoints as it goes, and resumes where a cancelled run stopped.")
with st.form("recover"):
    cols = st.columns(5)
    with cols[0]:
        recover_model = model_picker("recover", default=DEFAULT_MODEL, url_param=None)
    recover_start = cols[1].selectbox(
        "Start from", list(RECOVERY_STARTS), key="recover-method",
        help="magnitude: zeros grow on the cubic schedule while the model learns; the better start for unstructured "
             "zeros (MiniLM at 80%: 0.909 mean cosine after 15 minutes on 2 AMD Zen 5 cores). sparsegpt: one-shot "
             "masks from calibration text, then held; the better start for blocks (16x1 at 80%: 0.741 against "
             "0.716 after 3 minutes). sparsegpt per-layer: each layer is first measured on calibration text and the "
             "fragile ones stay denser, the same sparsity overall (16x1 at 80%, 1,000 steps: 0.803 against 0.781 "
             "uniform); it adds a few minutes of measuring before training.")
    recover_sparsity = cols[2].slider("Target sparsity", 0.5, 0.95, 0.8, 0.05, key="recover-sparsity")
    recover_block = cols[3].selectbox("Zeros", ["unstructured", "16x4", "16x1", "1x4"], key="recover-block",
                                      help="Blocks keep their structure through training (16x4, 1x4: int8 kernels)")
    recover_minutes = cols[4].number_input("Minutes", 1, 60, 15, key="recover-minutes")
    if st.form_submit_button("Prune and recover", key="recover-submit") and recover_model:
        recover_method, allocation = RECOVERY_STARTS[recover_start]
        start_job("recover", {"model": recover_model, "method": recover_method, "allocation": allocation,
                              "sparsity": recover_sparsity,
                              "block": None if recover_block == "unstructured" else recover_block,
                              "minutes": float(recover_minutes)},
                  label=f"Recovering {recover_model} at {recover_sparsity:.0%}")
recovered = job_status("recover")
if recovered and recovered.status == "done":
    result = recovered.result
    before, after = result["fidelity"]["dense_vs_one_shot"], result["fidelity"]["dense_vs_recovered"]
    cols = st.columns(4)
    cols[0].metric("Mean cosine vs dense", f"{after['mean_cosine']:.3f}",
                   f"{after['mean_cosine'] - before['mean_cosine']:+.3f} vs one-shot")
    cols[1].metric("Paraphrase retrieval", f"{after['retrieval_accuracy']:.1%}",
                   f"{after['retrieval_accuracy'] - before['retrieval_accuracy']:+.1%} vs one-shot")
    cols[2].metric("Sparsity", f"{result['sparsity']:.1%}")
    cols[3].metric("Training", f"{result['recovery']['steps']} steps",
                   f"{result['recovery']['minutes']:.1f} min, final loss {result['recovery']['final_loss']:.4f}",
                   delta_color="off")
    curve = result["recovery"].get("loss_curve")
    if curve:
        st.line_chart({"loss": [point[1] if isinstance(point, (list, tuple)) else point for point in curve]},
                      height=220)
    st.caption(f"In the library as **{result['library_name']}**"
               + (" · from the cache" if result.get("cache_hit") else ""))
    handoff_links(result["library_name"], ("store", "compile", "whatif"),
                  block=result.get("config", {}).get("block") if result.get("config", {}).get("method") == "block"
                  else "1x1")

st.divider()
st.subheader("Fidelity vs sparsity")
st.markdown("Each point prunes the dense model, then compares sentence embeddings with the dense model's on "
            "the project's 72 paraphrase pairs: mean and worst cosine, and whether each sentence's nearest "
            "neighbour is still its paraphrase.")
with st.form("sweep"):
    cols = st.columns([1, 2, 2])
    with cols[0]:
        sweep_model = model_picker("sweep", default=DEFAULT_MODEL, url_param="sweep_model")
    methods = cols[1].multiselect("Methods", METHOD_SPEC_CHOICES, default=list(METHOD_SPECS), key="sweep-methods")
    sparsities = cols[2].multiselect("Sparsities", SPARSITY_CHOICES, default=list(SPARSITIES), key="sweep-sparsities")
    if st.form_submit_button("Run the sweep", key="sweep-submit") and sweep_model and methods and sparsities:
        start_job("prune_sweep", {"model": sweep_model, "methods": methods, "sparsities": sorted(sparsities)},
                  label=f"Fidelity sweep of {sweep_model}")
sweep = job_status("prune_sweep")
shown_model = sweep.params.get("model", DEFAULT_MODEL) if sweep else DEFAULT_MODEL
curves = recorded_curves(run_store(), shown_model)
recorded = {key for points in curves.values() for point in points for key in point}
if curves and any(key in recorded for key in FIDELITY_SCORES):
    metrics = [key for key in FIDELITY_SCORES if key in recorded]  # what this model's sweeps scored
    metric = st.radio("Metric", metrics, horizontal=True, key="sweep-metric",
                      format_func=lambda key: FIDELITY_SCORES[key][0])
    st.plotly_chart(fidelity_curves(curves, metric, f"{shown_model}: {FIDELITY_SCORES[metric][0]} vs sparsity"),
                    width="stretch")
else:
    st.info(f"No sweep of {shown_model} recorded yet: run one above.")

st.divider()
st.subheader("Which layers can give up weights")
st.markdown("Each Linear layer pruned alone, the rest dense: how much fidelity (1 - mean cosine against the dense "
            "model on the paraphrase set) that layer costs at each sparsity. Robust layers can be pruned harder; "
            "the fragile ones decide how far a uniform pruning can go.")
with st.form("sensitivity"):
    cols = st.columns([1, 2, 1])
    with cols[0]:
        sensitivity_model = model_picker("sensitivity", default=DEFAULT_MODEL, url_param=None)
    sensitivity_sparsities = cols[1].multiselect("Sparsities", SPARSITY_CHOICES[1:], default=[0.5, 0.9],
                                                 key="sensitivity-sparsities")
    sensitivity_method = cols[2].selectbox("Method", METHODS, key="sensitivity-method")
    if st.form_submit_button("Measure layer by layer", key="sensitivity-submit") and sensitivity_model \
            and sensitivity_sparsities:
        start_job("sensitivity", {"model": sensitivity_model, "sparsities": sorted(sensitivity_sparsities),
                                  "method": sensitivity_method},
                  label=f"Layer sensitivity of {sensitivity_model}")
sensitivity = job_status("sensitivity")
if sensitivity and sensitivity.status == "done":
    st.plotly_chart(sensitivity_heatmap(sensitivity.result["layers"],
                                        f"{sensitivity.result['model']}: fidelity drop per layer "
                                        f"({sensitivity.result['method']})"), width="stretch")

