"""The dashboard's pages, once: the router in app.py, the links on Home and the hand-offs read this table.

The page modules live in ``views/``, not ``pages/``: Streamlit treats a ``pages/`` folder beside the main
script as its legacy multipage navigation, and the first request of a fresh server that opened a sub-page
URL (a shared link to /prune) got that navigation (lowercase file names, an extra "app" page) for the
whole browser session, even though app.py uses ``st.navigation``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PageEntry:
    slug: str  # the URL path (/prune) and the name hand-offs use
    path: str
    title: str
    icon: str  # a Material Symbols name
    answers: str  # what the page answers, for Home's links

    @property
    def material_icon(self) -> str:
        return f":material/{self.icon}:"


HOME = PageEntry("", "views/home.py", "Home", "home", "what SparseLab does, this machine, the cache, the latest runs")
PAGES = (
    HOME,
    PageEntry("demo", "views/demo.py", "Demo", "play_circle",
              "the whole pipeline on MiniLM in one click: size, fidelity and speed against the fastest engine"),
    PageEntry("library", "views/library.py", "Library", "inventory_2",
              "every model by name, with lineage, size, best fidelity and latency; upload your own"),
    PageEntry("prune", "views/prune.py", "Prune", "content_cut",
              "magnitude, block, m:n and what-if weights, and what they cost in fidelity"),
    PageEntry("store", "views/store.py", "Store", "compress",
              "int8 + sparse storage, PruneBERT's layout and a smaller one, bit-exact"),
    PageEntry("compile", "views/compile.py", "Compile", "memory",
              "TVM with Block Sparse Row kernels vs the fastest dense engines on these cores"),
    PageEntry("whatif", "views/whatif.py", "What-if", "speed",
              "how fast and how big at any sparsity and block, in seconds, from measured kernels"),
    PageEntry("export", "views/export.py", "Export", "phone_android", "TF-MOT pruning to TFLite, measured honestly"),
    PageEntry("compare", "views/compare.py", "Compare", "scatter_plot",
              "size vs latency vs accuracy of every run, the Pareto front"),
    PageEntry("runs", "views/runs.py", "Runs", "table_rows", "every measurement made here, filterable, as CSV"),
)


def page(slug: str) -> PageEntry:
    return next(entry for entry in PAGES if entry.slug == slug)
