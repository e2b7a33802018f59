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


def spread(timing: dict) -> tuple[float, float]:
    """(below, above) the median: the 10th to 90th percentile of the timed runs. A plus-or-minus standard
    deviation would draw a bar below zero for a run with one slow outlier (seen: 27 ms, bar from -20 to 80)."""
    if timing.get("p90_ms"):
        return timing["median_ms"] - timing["p10_ms"], timing["p90_ms"] - timing["median_ms"]
    return 0.0, 0.0  # a timing recorded before percentiles were kept: no honest spread to draw


def latency_bars(latencies: dict[str, dict], title: str) -> go.Figure:
    """Median latency per variant, the whisker from the 10th to the 90th percentile of its runs."""
    names = list(latencies)
    spreads = [spread(latencies[n]) for n in names]
    figure = go.Figure(go.Bar(
        x=names, y=[latencies[n]["median_ms"] for n in names],
        error_y={"type": "data", "symmetric": False, "array": [s[1] for s in spreads],
                 "arrayminus": [s[0] for s in spreads]},
        text=[f"{latencies[n]['median_ms']:.1f} ms" for n in names], textposition="outside",
        marker_color="#0f766e"))
    figure.update_layout(title=title, yaxis_title="ms (median; whiskers p10-p90)", height=360, margin={"t": 60})
    return figure


def layer_sparsity_bars(layers: list[dict], block: str) -> go.Figure:
    """Element and block sparsity of every Linear layer, pruned layers first in model order."""
    names = [layer["name"] for layer in layers]
    figure = go.Figure([
        go.Bar(name="element sparsity", x=names, y=[layer["sparsity"] for layer in layers], marker_color="#0f766e"),
        go.Bar(name=f"block sparsity ({block})", x=names,
               y=[layer["block_sparsity"] for layer in layers], marker_color="#f59e0b"),
    ])
    figure.update_layout(barmode="group", yaxis={"range": [0, 1], "title": "fraction zero"}, height=420,
                         xaxis={"tickangle": -60, "tickfont": {"size": 9}}, legend={"orientation": "h", "y": 1.1},
                         margin={"t": 40, "b": 160})
    return figure


def nonzero_heatmap(mask, row_start: int, col_start: int, row_lines: list[float], col_lines: list[float],
                    title: str) -> go.Figure:
    """Nonzero = 1 over a window of a weight, with block borders drawn as lines."""
    rows, cols = mask.shape
    figure = go.Figure(go.Heatmap(z=mask, x=list(range(col_start, col_start + cols)),
                                  y=list(range(row_start, row_start + rows)), zmin=0, zmax=1,
                                  colorscale=[[0, "#f8fafc"], [1, "#0f172a"]], showscale=False))
    for x in col_lines:
        figure.add_vline(x=col_start + x, line_width=1, line_color="#ef4444")
    for y in row_lines:
        figure.add_hline(y=row_start + y, line_width=1, line_color="#ef4444")
    figure.update_layout(title=title, height=520, xaxis_title="input (column)", yaxis_title="output (row)",
                         yaxis={"autorange": "reversed", "scaleanchor": "x"}, margin={"t": 50})
    return figure


def fidelity_curves(curves: dict[str, list[dict]], metric: str, title: str) -> go.Figure:
    """One line per pruning method: ``metric`` against sparsity."""
    figure = go.Figure([go.Scatter(name=label, x=[p["sparsity"] for p in points], y=[p.get(metric) for p in points],
                                   mode="lines+markers") for label, points in curves.items()])
    figure.update_layout(title=title, xaxis_title="sparsity of the pruned layers", yaxis_title=metric.replace("_", " "),
                         height=420, legend={"orientation": "h", "y": 1.12}, margin={"t": 70})
    return figure


def grouped_bars(rows: list[dict], x: str, y: str, group: str, title: str, y_title: str,
                 error: str | None = None) -> go.Figure:
    """Bars of ``y`` per ``x``, one colour per ``group`` value, optional error bars."""
    groups = list(dict.fromkeys(row[group] for row in rows))
    figure = go.Figure([go.Bar(name=str(g), x=[r[x] for r in rows if r[group] == g],
                               y=[r[y] for r in rows if r[group] == g],
                               error_y={"type": "data", "array": [r[error] for r in rows if r[group] == g]}
                               if error else None)
                        for g in groups])
    figure.update_layout(title=title, barmode="group", yaxis_title=y_title, height=400,
                         legend={"orientation": "h", "y": 1.12}, margin={"t": 70})
    return figure


def tradeoff_scatter(rows: list[dict], on_front: list[bool]) -> go.Figure:
    """Size vs latency, coloured by accuracy; the Pareto front ringed and joined."""
    placed = [(r, f) for r, f in zip(rows, on_front) if r["size_bytes"] and r["latency_ms"]]
    figure = go.Figure(go.Scattergl(
        x=[r["size_bytes"] / MB for r, _ in placed], y=[r["latency_ms"] for r, _ in placed], mode="markers",
        marker={"color": [r["accuracy"] if r["accuracy"] is not None else float("nan") for r, _ in placed],
                "colorscale": "Viridis", "cmin": 0, "cmax": 1, "colorbar": {"title": "accuracy"}, "size": 8,
                "opacity": 0.7},
        text=[f"#{r['id']} {r['kind']} {r['model']} {r['method'] or ''} {r['block'] or ''}" for r, _ in placed],
        hovertemplate="%{text}<br>%{x:.3f} MB · %{y:.3f} ms<extra></extra>", name="runs"))
    front = sorted((r for r, f in placed if f), key=lambda r: r["size_bytes"])
    figure.add_trace(go.Scatter(x=[r["size_bytes"] / MB for r in front], y=[r["latency_ms"] for r in front],
                                mode="markers+lines", name="Pareto front",
                                marker={"size": 14, "symbol": "circle-open", "color": "#dc2626", "line": {"width": 2}},
                                line={"dash": "dot", "color": "#dc2626"}))
    figure.update_layout(xaxis={"title": "size (MB)", "type": "log"}, yaxis={"title": "latency (ms)", "type": "log"},
                         height=520, legend={"orientation": "h", "y": 1.08}, margin={"t": 40})
    return figure


def metric_bars(rows: list[dict], metric: str, title: str) -> go.Figure:
    figure = go.Figure(go.Bar(x=[f"#{r['id']} {r['model']} {r['method'] or ''}" for r in rows],
                              y=[r[metric] for r in rows], marker_color="#0f766e"))
    figure.update_layout(title=title, height=300, margin={"t": 50})
    return figure


def speedup_sweep(points: list[dict], title: str) -> go.Figure:
    """Kernel speedup over PyTorch's dense Linear vs sparsity, one line per block shape."""
    blocks = list(dict.fromkeys(p["block"] for p in points))
    figure = go.Figure([go.Scatter(name=b, x=[p["sparsity"] for p in points if p["block"] == b],
                                   y=[p["speedup"] for p in points if p["block"] == b], mode="lines+markers")
                        for b in blocks])
    figure.add_hline(y=1, line_dash="dot", annotation_text="PyTorch dense")
    figure.update_layout(title=title, xaxis_title="sparsity", yaxis={"title": "speedup (x)", "type": "log"},
                         height=400, legend={"orientation": "h", "y": 1.12}, margin={"t": 70})
    return figure


def whatif_latency(estimates: list[dict], torch_ms: float, speedup: bool, peers: list[dict] | None = None) -> go.Figure:
    """Estimated latency (or speedup over the fastest peer, PyTorch eager without peers) vs sparsity, one curve
    per block with error bars; every peer engine a horizontal reference line labelled with its name."""
    peers = sorted(peers or [], key=lambda peer: peer["ms"])
    base_ms = peers[0]["ms"] if peers else torch_ms
    blocks = list(dict.fromkeys(e["block"] for e in estimates))
    traces = []
    for block in blocks:
        points = sorted((e for e in estimates if e["block"] == block), key=lambda e: e["sparsity"])
        if speedup:
            y = [base_ms / p["estimate_ms"] for p in points]
            err = [base_ms * p["error_ms"] / p["estimate_ms"] ** 2 for p in points]
        else:
            y, err = [p["estimate_ms"] for p in points], [p["error_ms"] for p in points]
        traces.append(go.Scatter(name=block, x=[p["sparsity"] for p in points], y=y, mode="lines+markers",
                                 error_y={"type": "data", "array": err}))
    figure = go.Figure(traces)
    lines = [(f"{peer['engine']} ({peer['precision']}) {peer['ms']:.1f} ms", peer["ms"]) for peer in peers]
    if not any(peer["engine"] == "pytorch" for peer in peers):
        lines.append((f"PyTorch eager dense ({torch_ms:.1f} ms)", torch_ms))
    for index, (text, ms) in enumerate(sorted(lines, key=lambda line: line[1])):
        figure.add_hline(y=base_ms / ms if speedup else ms, line_dash="dot", line_color="#64748b",
                         annotation_text=text, annotation_font_size=10,
                         annotation_position="top left" if index % 2 == 0 else "top right")
    reference = f"the fastest peer ({peers[0]['engine']})" if peers else "PyTorch"
    figure.update_layout(xaxis_title="sparsity of the Linear layers",
                         yaxis_title=f"speedup over {reference} (x)" if speedup else "estimated latency (ms)",
                         height=440, legend={"orientation": "h", "y": 1.12, "title": "block"}, margin={"t": 60})
    return figure


def whatif_sizes(sizes: list[dict]) -> go.Figure:
    """fp32 and int8-dense sizes (flat) against int8 + sparse storage per block, vs sparsity."""
    first = sorted(sizes, key=lambda s: s["sparsity"])
    figure = go.Figure([
        go.Scatter(name="fp32", x=[s["sparsity"] for s in first], y=[s["fp32_bytes"] / MB for s in first],
                   mode="lines", line={"dash": "dash"}),
        go.Scatter(name="int8 dense", x=[s["sparsity"] for s in first], y=[s["int8_dense_bytes"] / MB for s in first],
                   mode="lines", line={"dash": "dot"}),
    ])
    for block in dict.fromkeys(s["block"] for s in sizes):
        points = sorted((s for s in sizes if s["block"] == block), key=lambda s: s["sparsity"])
        figure.add_trace(go.Scatter(name=f"int8 + sparse ({block})", x=[p["sparsity"] for p in points],
                                    y=[p["int8_sparse_bytes"] / MB for p in points], mode="lines+markers"))
    figure.update_layout(xaxis_title="sparsity", yaxis_title="MB", height=440,
                         legend={"orientation": "h", "y": 1.15}, margin={"t": 60})
    return figure


def sensitivity_heatmap(layers: list[dict], title: str) -> go.Figure:
    """Fidelity drop (1 - mean cosine vs dense) when only one layer is pruned: layers down, sparsities across."""
    names = list(dict.fromkeys(row["name"] for row in layers))
    sparsities = sorted({row["sparsity"] for row in layers})
    drop = {(row["name"], row["sparsity"]): row["fidelity_drop"] for row in layers}
    figure = go.Figure(go.Heatmap(
        z=[[drop.get((name, s)) for s in sparsities] for name in names], x=[f"{s:.0%}" for s in sparsities],
        y=names, colorscale="Reds", colorbar={"title": "drop"},
        hovertemplate="%{y} at %{x}: fidelity drop %{z:.4f}<extra></extra>"))
    figure.update_layout(title=title, height=max(360, 14 * len(names) + 120), margin={"t": 50, "l": 260},
                         yaxis={"autorange": "reversed", "tickfont": {"size": 9}}, xaxis_title="sparsity of that layer")
    return figure
