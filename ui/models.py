"""Choosing a model: the library's models by name (the same names as the CLI), or a typed folder / hub id."""

import streamlit as st

from core.library.store import default_library
from ui.state import keep_in_url, url_value

OTHER = "a folder or hub id…"


def model_picker(key: str, default: str = "minilm", label: str = "Model", url_param: str | None = "model") -> str:
    """A library model or a typed folder / hub id; returns the name to give ``core``.

    The first choice comes from the URL's ``url_param`` (a hand-off or a shared link), and the choice is
    written back to it."""
    names = [model.name for model in default_library().entries(loadable_only=True)]
    choices = [*names, OTHER]
    wanted = url_value(url_param, default) if url_param else default
    typed = "" if wanted in names else wanted
    choice = st.selectbox(label, choices, index=choices.index(wanted if wanted in names else OTHER), key=f"{key}-model",
                          help="The model library: minilm is the real pretrained MiniLM-L6 (offline); *-tiny, "
                               "bert-*, gpt2: config-built with random weights; then uploaded, pruned and recovered "
                               "models (Library page). Or type a folder on this server or a Hugging Face hub id.")
    name = choice if choice != OTHER else st.text_input(
        "Folder or hub id", value=typed, key=f"{key}-model-path", placeholder="/path/to/model-folder").strip()
    if url_param and name:
        keep_in_url(**{url_param: name})
    return name


@st.cache_resource(max_entries=2, show_spinner="Loading the model…")
def loaded_model(name: str):
    """A model kept in memory between reruns, for views that read its weights (heatmaps, stats)."""
    from core.model_source import resolve

    return resolve(name).load_model()
