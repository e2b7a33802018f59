"""Hand-offs: each result offers the next step, opening its page with the model already chosen."""

from __future__ import annotations

import streamlit as st

from ui.navigation import page

LABELS = {
    "prune": "Prune this model",
    "store": "Store this model",
    "compile": "Compile this model",
    "whatif": "What-if for this model's shapes",
    "demo": "Run the whole demo",
}
MODEL_PARAM = {"compile": "weights"}  # Compile takes an already pruned model as its sparse weights


def handoff_links(model: str, steps: tuple[str, ...], **settings) -> None:
    """One link per next step, side by side; ``settings`` ride along in the URL (e.g. seq_len, threads)."""
    columns = st.columns(len(steps))
    for column, step in zip(columns, steps):
        target = page(step)
        params = {MODEL_PARAM.get(step, "model"): model, **{k: str(v) for k, v in settings.items()}}
        if step == "compile":
            params["sparse"] = "pruned folder"
        column.page_link(target.path, label=LABELS[step], icon=target.material_icon, query_params=params)
