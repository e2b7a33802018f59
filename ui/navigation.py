"""The dashboard's pages, once: the router in app.py and the links on Home both read this table."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PageEntry:
    path: str
    title: str
    icon: str  # a Material Symbols name
    answers: str  # what the page answers, for Home's links

    @property
    def material_icon(self) -> str:
        return f":material/{self.icon}:"


HOME = PageEntry("pages/home.py", "Home", "home", "what SparseLab does, this machine, the cache, the latest runs")
PAGES = (
    HOME,
    PageEntry("pages/prune.py", "Prune", "content_cut",
              "magnitude, block, m:n and what-if weights, and what they cost in fidelity"),
    PageEntry("pages/store.py", "Store", "compress",
              "int8 + sparse storage, PruneBERT's layout and a smaller one, bit-exact"),
    PageEntry("pages/compile.py", "Compile", "memory", "TVM with Block Sparse Row kernels vs PyTorch on these cores"),
    PageEntry("pages/whatif.py", "What-if", "speed",
              "how fast and how big at any sparsity and block, in seconds, from measured kernels"),
    PageEntry("pages/export.py", "Export", "phone_android", "TF-MOT pruning to TFLite, measured honestly"),
    PageEntry("pages/compare.py", "Compare", "scatter_plot",
              "size vs latency vs accuracy of every run, the Pareto front"),
    PageEntry("pages/runs.py", "Runs", "table_rows", "every measurement made here, filterable, as CSV"),
)
