"""Choosing a model source: the same names as the CLI."""

import streamlit as st

from core.model_source import BUNDLED, CONFIG_ARCHITECTURES

OTHER = "a folder or hub id…"


def model_picker(key: str, default: str = "minilm", label: str = "Model") -> str:
    """A known model or a typed folder / hub id; returns the name to give ``core``."""
    choices = [*BUNDLED, *CONFIG_ARCHITECTURES, OTHER]
    choice = st.selectbox(label, choices, index=choices.index(default), key=f"{key}-model",
                          help="minilm: real pretrained MiniLM-L6 (offline). bert-*: config-built, random weights. "
                               "Or a local folder (e.g. from Prune → save) or a Hugging Face hub id.")
    if choice != OTHER:
        return choice
    return st.text_input("Folder or hub id", key=f"{key}-model-path", placeholder="/path/to/pruned-model").strip()


@st.cache_resource(max_entries=2, show_spinner="Loading the pruned model…")
def loaded_model(name: str):
    """A model kept in memory between reruns, for views that read its weights (heatmaps, stats)."""
    from core.model_source import resolve

    return resolve(name).load_model()
