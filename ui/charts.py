"""Plotly figures the pages draw: data in, figure out, no computation beyond layout."""

from __future__ import annotations

import plotly.graph_objects as go

MB = 1e6


def size_waterfall(steps: list[dict], title: str) -> go.Figure:
    """fp32 -> int8 -> CSR -> HDF5 (PruneBERT) as a chain, then the SparseLab file as its own bar."""
    labels = [s["label"] for s in steps]
    sizes = [s["size_bytes"] / MB for s in steps]
    chain = sizes[:-1]
    figure = go.Figure(go.Waterfall(
        x=labels, measure=["absolute"] + ["relative"] * (len(chain) - 1) + ["absolute"],
        y=[chain[0], *(b - a for a, b in zip(chain, chain[1:])), sizes[-1]],
        text=[f"{s:.2f} MB" for s in sizes], textposition="outside",
        decreasing={"marker": {"color": "#0f766e"}}, increasing={"marker": {"color": "#b91c1c"}},
        totals={"marker": {"color": "#1d4ed8"}}))
    figure.update_layout(title=title, yaxis_title="MB", showlegend=False, height=420, margin={"t": 60})
    return figure


def latency_bars(latencies: dict[str, dict], title: str) -> go.Figure:
    """Median latency per variant with its standard deviation as the error bar."""
    names = list(latencies)
    figure = go.Figure(go.Bar(
        x=names, y=[latencies[n]["median_ms"] for n in names],
        error_y={"type": "data", "array": [latencies[n]["std_ms"] for n in names]},
        text=[f"{latencies[n]['median_ms']:.1f} ms" for n in names], textposition="outside",
        marker_color="#0f766e"))
    figure.update_layout(title=title, yaxis_title="ms (median)", height=360, margin={"t": 60})
    return figure
