"""Tables (markdown, LaTeX, JSON) and plots of experiment results.

A *table* is a list of rows ``{"name": str, "cells": {column: (mean, std) | None}, "note": str}``
with accuracies as fractions; rendering shows percentages ``mean ± std``.
"""

from __future__ import annotations

import math
import pathlib
from typing import Sequence

import numpy as np

from jaxunlearn.runs import write_json_atomic, write_text_atomic

COLUMNS = [("full", "retain"), ("full", "forget"), ("lp", "retain"), ("lp", "forget"), ("ncc", "retain"),
           ("ncc", "forget")]
HEADER = {"full": "Full", "lp": "LP", "ncc": "NCC"}


def mean_std(values: Sequence[float | None]) -> tuple[float, float] | None:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return None
    return float(np.mean(vals)), float(np.std(vals))


def row_from_evals(name: str, evals: Sequence[dict], note: str = "") -> dict:
    """Aggregates evaluation dicts (one per forget set / seed) into a table row."""
    cells = {f"{h}_{s}": mean_std([e.get(h, {}).get(s) if e.get(h) else None for e in evals]) for h, s in COLUMNS}
    return {"name": name, "cells": cells, "n": len(evals), "note": note}


def _fmt(cell, latex=False) -> str:
    if cell is None:
        return "–"
    m, s = cell
    pm = r" $\pm$ " if latex else " ± "
    return f"{100 * m:.2f}{pm}{100 * s:.2f}"


def markdown_table(rows: Sequence[dict], title: str = "") -> str:
    cols = [f"{HEADER[h]} {s}" for h, s in COLUMNS]
    lines = [f"### {title}", ""] if title else []
    lines.append("| method | " + " | ".join(cols) + " |")
    lines.append("|---|" + "---|" * len(cols))
    for r in rows:
        name = r["name"] + (f" ({r['note']})" if r.get("note") else "")
        lines.append(f"| {name} | " + " | ".join(_fmt(r["cells"].get(f"{h}_{s}")) for h, s in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def latex_table(rows: Sequence[dict], caption: str = "") -> str:
    cols = " & ".join(f"{HEADER[h]} {s}" for h, s in COLUMNS)
    body = "\n".join(
        r["name"].replace("_", r"\_").replace("+", "+") + " & "
        + " & ".join(_fmt(r["cells"].get(f"{h}_{s}"), latex=True) for h, s in COLUMNS) + r" \\"
        for r in rows)
    return ("\\begin{table}[t]\n\\centering\n\\small\n\\begin{tabular}{l" + "c" * len(COLUMNS) + "}\n\\toprule\n"
            f"method & {cols} \\\\\n\\midrule\n{body}\n\\bottomrule\n\\end{{tabular}}\n"
            f"\\caption{{{caption} Test accuracy (\\%), mean $\\pm$ std over forget sets.}}\n\\end{{table}}\n")


def write_table(workdir, name: str, rows: Sequence[dict], title: str, extra: dict | None = None) -> str:
    """Writes ``NAME.json``, ``NAME.md`` and ``NAME.tex`` into ``workdir``; returns the markdown."""
    workdir = pathlib.Path(workdir)
    md = markdown_table(rows, title)
    write_json_atomic(workdir / f"{name}.json", {"title": title, "rows": rows, **(extra or {})})
    write_text_atomic(workdir / f"{name}.md", md)
    write_text_atomic(workdir / f"{name}.tex", latex_table(rows, title + "."))
    return md


def bar_plot(rows: Sequence[dict], path, title: str) -> None:
    """Grouped bars: forget-class accuracy of Full / LP / NCC per method."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(rows)), 3.6))
    x = np.arange(len(rows))
    for i, (h, label) in enumerate([("full", "Full"), ("lp", "LP"), ("ncc", "NCC")]):
        vals = [r["cells"].get(f"{h}_forget") for r in rows]
        ax.bar(x + (i - 1) * 0.27, [100 * v[0] if v else 0 for v in vals], 0.27, label=label,
               yerr=[100 * v[1] if v else 0 for v in vals], capsize=2)
    ax.set_xticks(x, [r["name"] for r in rows], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("forget-class test accuracy (%)")
    ax.set_ylim(0, 105)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def line_plot(series: dict, path, title: str, xlabel: str, ylabel: str) -> None:
    """``series``: label -> (xs, ys); ys as fractions, drawn as percentages."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for label, (xs, ys) in series.items():
        ax.plot(xs, [100 * y if y is not None else np.nan for y in ys], marker="o", ms=3, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(-2, 102)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    _save(fig, path)


def _save(fig, path):
    import matplotlib.pyplot as plt
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
