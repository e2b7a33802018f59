"""A page's state in its URL: the model and settings a shared link reproduces.

A page reads each setting's first value from the URL query (``url_value``), so a hand-off
("Store this model") or a link someone shares opens the page with the same choices, and
writes the current choices back (``keep_in_url``), so the address bar always names the view.
The job a page shows is in the URL too (ui/jobs.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import streamlit as st


def url_value(param: str, default, cast: Callable = str, choices: Sequence | None = None):
    """The URL's ``param`` as ``cast`` (when it is one of ``choices``), else ``default``."""
    raw = st.query_params.get(param)
    if raw is None:
        return default
    try:
        value = cast(raw)
    except (TypeError, ValueError):
        return default
    return value if choices is None or value in choices else default


def url_index(param: str, choices: Sequence, default) -> int:
    """The index for a selectbox: the URL's choice if it is one, else ``default``'s."""
    return list(choices).index(url_value(param, default, type(default), choices))


def url_list(param: str, default: Sequence, cast: Callable = str, choices: Sequence | None = None) -> list:
    raw = st.query_params.get_all(param)
    if not raw:
        return list(default)
    try:
        values = [cast(item) for item in raw]
    except (TypeError, ValueError):
        return list(default)
    return [v for v in values if choices is None or v in choices] or list(default)


def keep_in_url(**values) -> None:
    """Write the current choices into the URL (lists as repeated parameters); None removes one."""
    for param, value in values.items():
        if value is None or value == []:
            if param in st.query_params:
                del st.query_params[param]
        elif isinstance(value, (list, tuple)):
            st.query_params[param] = [str(v) for v in value]
        else:
            st.query_params[param] = str(value)
