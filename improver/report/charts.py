"""The report's pictures, drawn with matplotlib and returned as inline SVG text.

No pyplot and no global state: each chart is its own ``Figure`` saved as SVG with text
kept as text (small files) and a fixed hash salt (the same data gives the same bytes).
"""
from __future__ import annotations

import io
import re

import networkx as nx

from improver.errors import require

matplotlib = require("matplotlib", "the HTML report (its charts)", "report")
from matplotlib.collections import LineCollection  # noqa: E402  (after the extra check above)
from matplotlib.figure import Figure  # noqa: E402

SPLIT_STYLE = {  # split key -> (label, colour, line style); unknown keys get the fallback
    "cv": ("cross-validated", "#1b7837", "-"),
    "heldout": ("held-out", "#2166ac", "-"),
    "test": ("test", "#542788", "-"),
    "train": ("in-sample (train)", "#b2182b", "--"),
    "all": ("all reviewed", "#777777", ":"),
}
OVERRIDE_COLOUR = "#c51b7d"
NODE_STYLE = {  # graph label -> (colour, size)
    "Precedent": ("#f1a340", 520), "Session": ("#bdbdbd", 300), "Decision": ("#4393c3", 260),
    "Review": ("#d6604d", 260), "Entity": ("#5aae61", 340), "Band": ("#9970ab", 300),
}


def to_svg(figure: Figure, tight: bool = True) -> str:
    """The figure as an ``<svg>`` element to paste into HTML (no XML prolog, no fixed size)."""
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "improver", "font.family": "sans-serif"}):
        figure.savefig(buffer, format="svg", bbox_inches="tight" if tight else None, metadata={"Date": None, "Creator": None})
    text = buffer.getvalue()
    text = text[text.index("<svg"):]
    return re.sub(r'(<svg[^>]*?) width="[^"]*" height="[^"]*"', r"\1", text, count=1)


def agreement_curve(points: list[dict], splits: list[str]) -> str:
    """Agreement per experiment along the lineage, one line per split (``points[i][split]`` in 0..1 or None)."""
    figure = Figure(figsize=(7.5, 3.2))
    ax = figure.add_subplot()
    xs = list(range(len(points)))
    for split in splits:
        label, colour, style = SPLIT_STYLE.get(split, (split, "#444444", "-."))
        ys = [p.get(split) for p in points]
        shown = [(x, y * 100) for x, y in zip(xs, ys) if y is not None]
        if not shown:
            continue
        ax.plot([x for x, _ in shown], [y for _, y in shown], style, color=colour, marker="o", label=label, linewidth=2)
        x, y = shown[-1]
        ax.annotate(f"{y:.1f}%", (x, y), textcoords="offset points", xytext=(6, 0), va="center", color=colour, fontsize=8)
    ax.set_xticks(xs, [p["label"] for p in points], fontsize=8)
    ax.set_xlim(-0.3, max(len(points) - 1, 1) + 0.5)
    ax.set_ylabel("agreement with reviewers (%)")
    low = min([p[s] * 100 for p in points for s in splits if p.get(s) is not None] or [0])
    ax.set_ylim(max(0, low - 10), 100)
    ax.grid(axis="y", alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    return to_svg(figure)


def context_graph(nodes: dict[str, dict], edges: list[tuple[str, str, str]], center: str) -> str:
    """A picture of a small context graph around ``center``: ``nodes`` key -> {label, text}; ``edges``
    (source, target, type). Colours as ``NODE_STYLE``; the page shows the key once (``graph_key``)."""
    graph = nx.Graph()
    graph.add_nodes_from(nodes)
    graph.add_edges_from((a, b) for a, b, _ in edges)
    position = nx.spring_layout(graph, pos={center: (0.0, 0.0)}, fixed=[center], seed=7,
                                k=1.6 / max(len(graph), 1) ** 0.5, iterations=80)
    figure = Figure(figsize=(5.6, 4.0))
    ax = figure.add_axes((0.0, 0.0, 1.0, 1.0))  # a fixed layout: one drawing pass when saved
    for overrides in (False, True):
        lines = [(position[a], position[b]) for a, b, kind in edges if (kind == "OVERRIDES") == overrides]
        ax.add_collection(LineCollection(lines, colors=OVERRIDE_COLOUR if overrides else "#cccccc", zorder=1,
                                         linewidths=1.6 if overrides else 0.9, linestyles="--" if overrides else "-"))
    for label, (colour, size) in NODE_STYLE.items():
        keys = [k for k, n in nodes.items() if n["label"] == label]
        if keys:
            ax.scatter([position[k][0] for k in keys], [position[k][1] for k in keys], s=size, c=colour,
                       edgecolors="white", linewidths=1, zorder=2)
    for key, node in nodes.items():
        x, y = position[key]
        ax.annotate(node["text"], (x, y), textcoords="offset points", xytext=(0, -13), ha="center", fontsize=6.5,
                    zorder=3)
    ax.margins(0.12)
    ax.set_axis_off()
    return to_svg(figure, tight=False)


def sparkline(values: list[int], width: int = 120, height: int = 24) -> str:
    """A tiny inline SVG line of counts (e.g. overrides per week), its last point marked."""
    if not values:
        return ""
    top = max(max(values), 1)
    step = width / max(len(values) - 1, 1)
    points = [(round(i * step, 1), round(height - 2 - (v / top) * (height - 4), 1)) for i, v in enumerate(values)]
    line = " ".join(f"{x},{y}" for x, y in points)
    x, y = points[-1]
    return (f'<svg class=spark viewBox="-2 0 {width + 4} {height}" width="{width + 4}" height="{height}" role=img '
            f'aria-label="{", ".join(map(str, values))}"><polyline fill=none stroke="#d6604d" stroke-width=1.5 '
            f'points="{line}"/><circle cx="{x}" cy="{y}" r=2 fill="#d6604d"/></svg>')


def graph_key() -> list[tuple[str, str]]:
    """(label, colour) of every kind of node and of the override edge, for the page's key."""
    return [(label.lower(), colour) for label, (colour, _) in NODE_STYLE.items()] + [("human overrides agent",
                                                                                       OVERRIDE_COLOUR)]
