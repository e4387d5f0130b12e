"""Tables (markdown, LaTeX, JSON, long-format CSV) and plots of experiment results.

Two kinds of table rows are rendered:

* *seed rows* (:func:`rows_over_seeds`): ``{"name", "method", "mode", "columns", "cells",
  "per_forget_set", "seeds", "forget_sets", "n", "note"}`` where every cell is a
  :func:`jaxunlearn.stats.summarize` dict over seeds (pooled over forget sets in ``"cells"``,
  one forget set in ``"per_forget_set"[fs]``). Rendered ``mean ± std [95 % CI]``.
* *legacy rows* (:func:`row_from_evals`): ``{"name", "cells": {column: (mean, std) | None},
  "note"}``, mean ± std over the evaluation dicts given (forget sets of one seed).

Accuracies are fractions and are rendered as percentages.

The long format (:func:`long_records`, :func:`write_long_csv`) has one record per
``(seed, forget_set, method, mode, head, split)`` and every metric of an evaluation as a column,
so results can be re-aggregated with any tool.
"""

from __future__ import annotations

import csv
import io
import math
import numbers
import pathlib
import re
import textwrap
from typing import Iterable, Mapping, Sequence

import numpy as np

from jaxunlearn import stats
from jaxunlearn.evaluators.base import is_number as _is_number, leaves as _leaves
from jaxunlearn.runs import write_json_atomic, write_text_atomic

COLUMNS = [("full", "retain"), ("full", "forget"), ("lp", "retain"), ("lp", "forget"), ("ncc", "retain"),
           ("ncc", "forget")]
HEADER = {"full": "Full", "lp": "LP", "ncc": "NCC", "knn": "kNN", "model": "model"}

#: identifying columns of a long-format record, in CSV order
ID_COLUMNS = ("seed", "forget_set", "method", "mode", "head", "split")
#: split names of an accuracy section (``evaluate_model``'s ``full`` / ``lp`` / ``ncc`` / ``knn``)
ACCURACY_SPLITS = ("retain", "forget", "all", "train_retain", "train_forget")
#: the pseudo-head of model-level metrics (collapse, privacy, similarity, run times)
MODEL = "model"
#: readable names of metric columns (others are shown by their column name)
METRIC_LABEL = {"mia_efficacy": "MIA-efficacy", "avg_gap": "Avg. gap", "cka_original": "CKA to original",
                "cka_retrained": "CKA to retrained", "nc1": "NC1", "loss_attack_auc": "loss-attack AUC",
                "loss_attack_accuracy": "loss-attack acc.", "runtime_s": "run time (s)",
                "nc2_etf_distance": "NC2 (ETF dist.)", "nc3_self_duality": "NC3 (self-duality)",
                "misalignment": "misalignment"}
#: metrics that are fractions and are shown as percentages
PERCENT_METRICS = ("accuracy", "UA", "RA", "TA", "mia_efficacy", "loss_attack_accuracy", "avg_gap")


# ----------------------------------------------------------------------------- escaping

_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
    "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    # characters pdflatex's default utf8 input does not define (or that need math mode)
    "±": r"$\pm$", "→": r"$\rightarrow$", "←": r"$\leftarrow$", "×": r"$\times$", "≈": r"$\approx$",
    "≤": r"$\leq$", "≥": r"$\geq$", "−": "-", "γ": r"$\gamma$", "λ": r"$\lambda$", "α": r"$\alpha$",
    "β": r"$\beta$", "μ": r"$\mu$", "σ": r"$\sigma$", "Δ": r"$\Delta$",
}
_LATEX_RE = re.compile("|".join(re.escape(k) for k in _LATEX_SPECIAL))


def latex_escape(text) -> str:
    """``text`` as LaTeX source that prints it literally.

    Escapes ``\\ & % $ # _ { } ~ ^`` and turns a few non-ASCII symbols (``± → × ≈ ≤ ≥ −`` and
    some Greek letters) into their math-mode commands, so the result compiles with pdflatex.
    """
    return _LATEX_RE.sub(lambda m: _LATEX_SPECIAL[m.group(0)], str(text))


# ----------------------------------------------------------------------------- legacy rows

def mean_std(values: Sequence[float | None]) -> tuple[float, float] | None:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return None
    return float(np.mean(vals)), float(np.std(vals))


def row_from_evals(name: str, evals: Sequence[dict], note: str = "") -> dict:
    """Aggregates evaluation dicts (one per forget set / seed) into a table row."""
    cells = {f"{h}_{s}": mean_std([e.get(h, {}).get(s) if e.get(h) else None for e in evals]) for h, s in COLUMNS}
    return {"name": name, "cells": cells, "n": len(evals), "note": note}


# ----------------------------------------------------------------------------- long format

def forget_set_name(forget_set) -> str:
    """The forget set's name in records and file names: ``[2, 4, 6]`` -> ``"f2_4_6"``; a str is kept."""
    if isinstance(forget_set, str):
        if not forget_set:
            raise ValueError("forget set name is empty; pass e.g. 'f0' or the class list [0]")
        return forget_set
    try:
        classes = [int(c) for c in np.asarray(forget_set).reshape(-1)]
    except (TypeError, ValueError):
        raise ValueError(f"forget set {forget_set!r} is neither a name nor a list of classes") from None
    if not classes:
        raise ValueError("forget set is empty; pass e.g. 'f0' or the class list [0]")
    return "f" + "_".join(str(c) for c in classes)


def _flatten_eval(ev: Mapping) -> dict:
    """``{(head, split): {metric: float}}`` of one ``evaluate_model`` dict (see :func:`long_records`)."""
    cells: dict = {}

    def put(head, split, col, v):
        if not _is_number(v):
            return
        if col in ID_COLUMNS:
            raise ValueError(f"long_records: metric name {col!r} clashes with an identifying column; rename it")
        row = cells.setdefault((str(head), str(split)), {})
        if col in row:
            raise ValueError(f"long_records: metric {col!r} of ({head}, {split}) is given twice")
        row[col] = float(v)

    from jaxunlearn import evaluators  # each family names its own columns

    for section, val in ev.items():
        if _is_number(val):
            put(MODEL, "all", section, val)
        elif not isinstance(val, Mapping):
            continue  # lists and strings have no place in a numeric column
        elif (cols := evaluators.columns(section, val)) is not None:
            for head, split, col, x in cols:
                put(head, split, col, x)
        elif section == "runtime_s":
            for k, x in _leaves(val):
                put(MODEL, "all", f"runtime_{k}_s", x)
        elif any(k in ACCURACY_SPLITS and _is_number(v) for k, v in val.items()):
            for head, split, col, x in evaluators.accuracy_columns(section, val):  # a head keyed by split names
                put(head, split, col, x)
        else:                                    # anything else: model-level, prefixed by its section
            for col, x in _leaves(val, f"{section}_"):
                put(MODEL, "all", col, x)
    return cells


def long_records(eval_dict: Mapping, seed: int, forget_set, method: str, mode: str) -> list[dict]:
    """Flattens one :func:`jaxunlearn.evaluate.evaluate_model` dict into long-format records.

    One record per ``(head, split)``: ``{"seed", "forget_set", "method", "mode", "head",
    "split", <metric>: float, ...}``.

    A section named after a registered evaluator (:mod:`jaxunlearn.evaluators`) flattens as
    that evaluator's ``columns`` say; the built-in ones give:

    * ``full`` / ``lp`` / ``ncc`` / ``knn`` (and any section keyed by split names):
      head = the section, split in ``retain, forget, all, train_retain, train_forget``, metric
      ``accuracy``; the section's other numbers (``UA``, ``RA``, ``TA`` of ``full``) go to its
      ``split="all"`` record under their own names.
    * head ``"model"``: ``collapse`` (``split="all"`` for its top-level numbers, ``"forget"`` /
      ``"retain"`` for its per-split dicts; names as in the dict, e.g. ``nc1``; another nested
      dict ``g`` on ``split="all"`` as ``g_<name>``), ``privacy``
      (``mia_efficacy``, ``loss_attack_accuracy``, ``loss_attack_auc``, ...), ``similarity``
      (``cka_original`` / ``cka_retrained`` per split), ``runtime_s`` (``runtime_<part>_s``) and
      top-level numbers; any other section's numeric leaves as ``<section>_<path>``.
    * ``layerwise``: head ``lp_<stage>``, ``accuracy`` per split.
    * ``relearn``: the last point of each curve, ``relearn_k<k>_end`` on (full, forget),
      (ncc, forget) and (full, retain).

    Lists (curves, counts) are not flattened; booleans and strings are skipped.

    Args:
      eval_dict: the evaluation.
      seed: the run's seed (int).
      forget_set: its name (``"f0"``, ``"f2_4_6"``) or its class list (converted by
        :func:`forget_set_name`).
      method, mode: e.g. ``"random_label"``, ``"full"`` (the study's names for the model).

    Returns:
      The records, sorted by (head, split).
    """
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool):
        raise ValueError(f"long_records: seed must be an int, got {seed!r}")
    for name, v in (("method", method), ("mode", mode)):
        if not isinstance(v, str) or not v:
            raise ValueError(f"long_records: {name} must be a non-empty string, got {v!r}")
    if not isinstance(eval_dict, Mapping):
        raise ValueError(f"long_records: eval_dict must be an evaluate_model dict, got {type(eval_dict).__name__}")
    fs = forget_set_name(forget_set)
    ident = {"seed": int(seed), "forget_set": fs, "method": method, "mode": mode}
    return [{**ident, "head": h, "split": s, **m} for (h, s), m in sorted(_flatten_eval(eval_dict).items())]


def _metric_columns(records: Iterable[Mapping]) -> list[str]:
    seen = {k for r in records for k in r if k not in ID_COLUMNS}
    return (["accuracy"] if "accuracy" in seen else []) + sorted(seen - {"accuracy"})


def write_long_csv(path, records: Sequence[Mapping]) -> None:
    """Writes long-format records as CSV, atomically (temporary file, then rename).

    Columns: ``seed, forget_set, method, mode, head, split``, then ``accuracy``, then the other
    metrics sorted by name; a metric a record lacks is an empty field. Floats are written
    with ``repr`` so :func:`read_long_csv` returns them exactly.

    Raises:
      ValueError: a record lacks an identifying column, or two records share one
        ``(seed, forget_set, method, mode, head, split)``.
    """
    seen = set()
    for i, r in enumerate(records):
        missing = [c for c in ID_COLUMNS if c not in r]
        if missing:
            raise ValueError(f"write_long_csv: record {i} has no {', '.join(missing)}; build records with long_records")
        key = tuple(r[c] for c in ID_COLUMNS)
        if key in seen:
            raise ValueError(f"write_long_csv: two records for {dict(zip(ID_COLUMNS, key))}; drop the duplicate")
        seen.add(key)
    columns = list(ID_COLUMNS) + _metric_columns(records)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", extrasaction="raise")
    w.writeheader()
    for r in records:
        w.writerow({c: ("" if r.get(c) is None else repr(float(r[c])) if isinstance(r.get(c), float)
                        else r.get(c)) for c in columns})
    write_text_atomic(path, buf.getvalue())


def read_long_csv(path) -> list[dict]:
    """Reads a file of :func:`write_long_csv`: ``seed`` as int, the other identifying columns as
    str, metrics as float (``None`` where empty; a field that is not a number stays a str)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise ValueError(f"read_long_csv: {path} does not exist; write it with write_long_csv")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ID_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"read_long_csv: {path} has no column {', '.join(missing)}; is it a long-format CSV?")
        out = []
        for raw in reader:
            rec = {"seed": int(raw["seed"]), **{c: raw[c] for c in ID_COLUMNS[1:]}}
            for k, v in raw.items():
                if k in ID_COLUMNS:
                    continue
                if v == "" or v is None:
                    rec[k] = None
                else:
                    try:
                        rec[k] = float(v)
                    except ValueError:
                        rec[k] = v
            out.append(rec)
    return out


# ----------------------------------------------------------------------------- rows over seeds

def _natural_key(name: str):
    nums = re.findall(r"\d+", name)
    return ([int(n) for n in nums], name)


def _norm_column(col) -> tuple[str, str, str]:
    if len(col) == 2:
        return str(col[0]), str(col[1]), "accuracy"
    if len(col) == 3:
        return str(col[0]), str(col[1]), str(col[2])
    raise ValueError(f"column {col!r} must be (head, split) or (head, split, metric)")


def column_key(col) -> str:
    """The cell key of a column: ``"full_forget"`` for accuracy, ``"model_all_mia_efficacy"`` otherwise."""
    h, s, m = _norm_column(col)
    return f"{h}_{s}" if m == "accuracy" else f"{h}_{s}_{m}"


def column_header(col) -> str:
    """A readable header: ``"Full forget"``, or the metric's name (with its head and split unless
    they are the model-level ``model``/``all`` or ``full``/``all``)."""
    h, s, m = _norm_column(col)
    if m == "accuracy":
        return f"{HEADER.get(h, h)} {s}"
    label = METRIC_LABEL.get(m, m)
    if (h, s) in (("model", "all"), ("full", "all")):
        return label
    return f"{label} ({s})" if h == MODEL else f"{label} ({HEADER.get(h, h)} {s})"


def _is_percent(col) -> bool:
    m = _norm_column(col)[2]
    return m in PERCENT_METRICS or m.startswith("relearn_")


def rows_over_seeds(records: Sequence[Mapping], methods: Sequence, columns: Sequence = COLUMNS, *,
                    forget_sets: Sequence | None = None, seeds: Sequence[int] | None = None,
                    confidence: float = 0.95) -> list[dict]:
    """Table rows with every cell summarised over seeds, per forget set and pooled.

    Pooled cell: for each seed, the mean of the value over the row's forget sets (a seed that
    lacks the value on one of them is left out), then :func:`jaxunlearn.stats.summarize` over
    seeds; so its error bar is the spread between seeds, not between forget sets.

    Args:
      records: long-format records (:func:`long_records` / :func:`read_long_csv`).
      methods: one row per entry: ``(method, mode)`` or ``(method, mode, title)``; the title
        defaults to the method, with `` (mode)`` unless the mode is ``full`` / ``none`` / empty.
      columns: ``(head, split)`` (metric ``accuracy``) or ``(head, split, metric)`` tuples.
      forget_sets: names to use (default: each row's own, in natural order); ``seeds``
        likewise (default: every seed of the row).
      confidence: of the interval (key ``ci95`` either way).

    Returns:
      ``[{"name", "method", "mode", "columns", "cells": {key: summary}, "per_forget_set":
      {fs: {key: summary}}, "seeds", "forget_sets", "n", "note"}]`` where ``key`` is
      :func:`column_key` and ``n`` the number of seeds.

    Raises:
      ValueError: a method has no records, its (seed, forget set) pairs are not a full grid,
        or two records share a key.
    """
    cols = [_norm_column(c) for c in columns]
    by_model: dict = {}
    for r in records:
        by_model.setdefault((r["method"], r["mode"]), []).append(r)
    fs_filter = None if forget_sets is None else [forget_set_name(f) for f in forget_sets]
    rows = []
    for entry in methods:
        if len(entry) not in (2, 3):
            raise ValueError(f"rows_over_seeds: method entry {entry!r} must be (method, mode) or (method, mode, title)")
        method, mode = entry[0], entry[1]
        title = entry[2] if len(entry) == 3 else method if mode in ("", "none", "full") else f"{method} ({mode})"
        recs = by_model.get((method, mode), [])
        if fs_filter is not None:
            recs = [r for r in recs if r["forget_set"] in fs_filter]
        if seeds is not None:
            recs = [r for r in recs if r["seed"] in set(seeds)]
        if not recs:
            have = sorted({f"{m}/{md}" for m, md in by_model})
            raise ValueError(f"rows_over_seeds: no records of method {method!r} mode {mode!r}; have {have}")
        row_seeds = sorted({r["seed"] for r in recs})
        row_fs = sorted({r["forget_set"] for r in recs}, key=_natural_key)
        pairs = {(r["seed"], r["forget_set"]) for r in recs}
        missing = [(s, f) for s in row_seeds for f in row_fs if (s, f) not in pairs]
        if missing:
            s, f = missing[0]
            raise ValueError(f"rows_over_seeds: {method}/{mode} has no record for seed {s}, forget set {f} "
                             f"({len(missing)} missing); evaluate it or restrict seeds=/forget_sets=")
        value: dict = {}
        for r in recs:
            for h, s, m in cols:
                if r["head"] == h and r["split"] == s:
                    k = (r["seed"], r["forget_set"], h, s, m)
                    if k in value:
                        raise ValueError(f"rows_over_seeds: two records for seed {k[0]}, forget set {k[1]}, "
                                         f"{method}/{mode} {h}/{s}; drop the duplicate")
                    v = r.get(m)
                    value[k] = None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)
        per_fs = {f: {} for f in row_fs}
        cells = {}
        for col in cols:
            key = column_key(col)
            h, s, m = col
            for f in row_fs:
                per_fs[f][key] = stats.summarize([value.get((sd, f, h, s, m)) for sd in row_seeds], confidence)
            pooled = []
            for sd in row_seeds:
                vals = [value.get((sd, f, h, s, m)) for f in row_fs]
                pooled.append(None if any(v is None for v in vals) else float(np.mean(vals)))
            cells[key] = stats.summarize(pooled, confidence)
        rows.append({"name": title, "method": method, "mode": mode, "columns": [list(c) for c in cols],
                     "cells": cells, "per_forget_set": per_fs, "seeds": row_seeds, "forget_sets": row_fs,
                     "n": len(row_seeds), "note": ""})
    return rows


#: SalUn's columns: unlearning accuracy (1 - forget train accuracy), retain train accuracy,
#: test (retain) accuracy, MIA-efficacy
SALUN_COLUMNS = [("full", "all", "UA"), ("full", "all", "RA"), ("full", "all", "TA"), ("model", "all", "mia_efficacy")]
#: SalUn's table: UA / RA / TA / MIA-efficacy, the unlearning run time and the average gap to Retrain
SALUN_TABLE_COLUMNS = [*SALUN_COLUMNS, ("model", "all", "runtime_s"), ("model", "all", "avg_gap")]
#: the geometry table: neural collapse of the train features and CKA of the test features to the
#: original and the retrained model (on the forget classes' samples)
GEOMETRY_COLUMNS = [("model", "all", "nc1"), ("model", "retain", "nc1"), ("model", "forget", "nc1"),
                    ("model", "all", "nc2_etf_distance"), ("model", "all", "nc3_self_duality"),
                    ("model", "all", "misalignment"), ("model", "forget", "cka_original"),
                    ("model", "forget", "cka_retrained")]


def with_gap(records: Sequence[Mapping], reference: tuple[str, str] = ("retrain", "full"),
             columns: Sequence = SALUN_COLUMNS, name: str = "avg_gap") -> list[dict]:
    """Copies of ``records`` whose ``(model, all)`` record of every (seed, forget set, method,
    mode) gets ``name`` = the mean over ``columns`` of ``|value - reference's value|`` on the
    same seed and forget set (SalUn's "average gap"; fractions). ``None`` where a value or the
    reference is missing. Summarise it with ``rows_over_seeds(..., [("model", "all", name)])``.

    Raises:
      ValueError: no record of the reference method.
    """
    cols = [_norm_column(c) for c in columns]
    value = {}
    for r in records:
        for h, s, m in cols:
            if r["head"] == h and r["split"] == s and r.get(m) is not None:
                value[(r["seed"], r["forget_set"], r["method"], r["mode"], h, s, m)] = float(r[m])
    if not any(k[2:4] == tuple(reference) for k in value):
        raise ValueError(f"with_gap: no records of the reference {reference[0]}/{reference[1]}; pass reference=")
    out = [dict(r) for r in records]
    model_all = {(r["seed"], r["forget_set"], r["method"], r["mode"]): r for r in out
                 if r["head"] == MODEL and r["split"] == "all"}
    for key in sorted({(r["seed"], r["forget_set"], r["method"], r["mode"]) for r in records}, key=str):
        gaps = []
        for h, s, m in cols:
            a = value.get((*key, h, s, m))
            b = value.get((key[0], key[1], *reference, h, s, m))
            gaps.append(None if a is None or b is None else abs(a - b))
        gap = None if any(g is None for g in gaps) else float(np.mean(gaps))
        rec = model_all.get(key)
        if rec is None:
            rec = dict(zip(ID_COLUMNS, (*key, MODEL, "all")))
            out.append(rec)
        rec[name] = gap
    return out


# ----------------------------------------------------------------------------- rendering

def _is_seed_row(row) -> bool:
    return "per_forget_set" in row


def _row_columns(rows) -> list[tuple[str, str, str]]:
    for r in rows:
        if r.get("columns"):
            return [_norm_column(c) for c in r["columns"]]
    return [_norm_column(c) for c in COLUMNS]


def _digits(scale) -> int:
    return 1 if scale == 100 else 3


def _fmt(cell, latex=False, scale=100.0, digits=None, ci=True) -> str:
    """A cell as text: legacy ``(mean, std)`` -> ``"74.20 ± 1.30"``; a summary ->
    ``"74.2 ± 1.3 [71.0, 77.4]"`` (the interval only when ``ci``); missing -> ``–``."""
    if cell is None or (isinstance(cell, Mapping) and cell.get("mean") is None):
        return "--" if latex else "–"
    pm = r" $\pm$ " if latex else " ± "
    if not isinstance(cell, Mapping):
        m, s = cell
        d = 2 if digits is None else digits
        return f"{scale * m:.{d}f}{pm}{scale * s:.{d}f}"
    d = _digits(scale) if digits is None else digits
    text = f"{scale * cell['mean']:.{d}f}{pm}{scale * cell['std']:.{d}f}"
    if ci and cell.get("ci95") is not None:
        text += f" [{scale * cell['ci_low']:.{d}f}, {scale * cell['ci_high']:.{d}f}]"
    return text


def _seed_caption(rows, forget_set=None) -> str:
    ns = sorted({r["n"] for r in rows})
    n = f"n = {ns[0]}" if len(ns) == 1 else "n (column n)"
    fss = sorted({f for r in rows for f in r["forget_sets"]}, key=_natural_key)
    where = (f"forget set {forget_set}" if forget_set else
             f"pooled over forget sets {', '.join(fss)} (per seed the mean over forget sets, then over seeds)")
    return (f"Cells: mean ± std (ddof 1) over {n} seeds and [95 % CI] (Student t, n−1 dof); accuracies and "
            f"rates in %; {where}.")


def _md_seed_table(rows, title, forget_set=None, columns=None):
    cols = columns or _row_columns(rows)
    lines = [f"### {title}" + (f" — forget set {forget_set}" if forget_set else ""), ""] if title else []
    lines.append("| method | n | " + " | ".join(column_header(c) for c in cols) + " |")
    lines.append("|---|---|" + "---|" * len(cols))
    for r in rows:
        cells = r["per_forget_set"].get(forget_set, {}) if forget_set else r["cells"]
        name = r["name"] + (f" ({r['note']})" if r.get("note") else "")
        lines.append(f"| {name} | {r['n']} | " + " | ".join(
            _fmt(cells.get(column_key(c)), scale=100 if _is_percent(c) else 1) for c in cols) + " |")
    lines += ["", "*" + _seed_caption(rows, forget_set) + "*"]
    return "\n".join(lines) + "\n"


def markdown_table(rows: Sequence[dict], title: str = "", *, per_forget_set: bool = True) -> str:
    """A markdown table. Seed rows: the pooled table, then (``per_forget_set``) one table per
    forget set, each with a caption line saying what ± and [..] are. Legacy rows: one table."""
    if rows and all(_is_seed_row(r) for r in rows):
        parts = [_md_seed_table(rows, title)]
        if per_forget_set:
            fss = sorted({f for r in rows for f in r["forget_sets"]}, key=_natural_key)
            parts += [_md_seed_table(rows, title or "Table", f) for f in fss]
        return "\n".join(parts)
    cols = [f"{HEADER[h]} {s}" for h, s in COLUMNS]
    lines = [f"### {title}", ""] if title else []
    lines.append("| method | " + " | ".join(cols) + " |")
    lines.append("|---|" + "---|" * len(cols))
    for r in rows:
        name = r["name"] + (f" ({r['note']})" if r.get("note") else "")
        lines.append(f"| {name} | " + " | ".join(_fmt(r["cells"].get(f"{h}_{s}")) for h, s in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


#: the forget-split columns a forget-set matrix shows by default (the heads of tables 1-3)
FORGET_COLUMNS = [("full", "forget"), ("lp", "forget"), ("ncc", "forget")]


def forget_set_matrix(rows: Sequence[dict], columns: Sequence = FORGET_COLUMNS, title: str = "") -> str:
    """Markdown matrices of seed rows (:func:`rows_over_seeds`): for each column, one table with
    a row per method and a column per forget set (then the pooled cell), each cell mean ± std
    over seeds (no interval, to stay narrow). Shows at one look on which forget sets a
    method's result holds.

    Args:
      rows: seed rows of one table (``per_forget_set`` and ``cells`` keyed by :func:`column_key`).
      columns: ``(head, split)`` or ``(head, split, metric)`` tuples, one matrix each.
      title: prefix of each matrix's heading.

    Returns:
      The markdown of all matrices; a cell a row lacks prints ``–``.
    """
    fss = sorted({f for r in rows for f in r["forget_sets"]}, key=_natural_key)
    parts = []
    for col in (_norm_column(c) for c in columns):
        key = column_key(col)
        scale = 100 if _is_percent(col) else 1
        lines = [f"### {title + ': ' if title else ''}{column_header(col)} per forget set", "",
                 "| method | n | " + " | ".join(fss) + " | pooled |", "|---|---|" + "---|" * (len(fss) + 1)]
        for r in rows:
            cells = [r["per_forget_set"].get(f, {}).get(key) for f in fss] + [r["cells"].get(key)]
            lines.append(f"| {r['name']} | {r['n']} | " + " | ".join(_fmt(c, scale=scale, ci=False) for c in cells) + " |")
        lines += ["", f"*Cells: mean ± std (ddof 1) over the seeds of each forget set; {'%' if scale == 100 else 'raw values'}; "
                      "pooled: per seed the mean over forget sets, then over seeds.*"]
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def _tex_seed_table(rows, caption, forget_set=None):
    cols = _row_columns(rows)
    head = " & ".join(latex_escape(column_header(c)) for c in cols)
    body = []
    for r in rows:
        cells = r["per_forget_set"].get(forget_set, {}) if forget_set else r["cells"]
        vals = [cells.get(column_key(c)) for c in cols]
        scales = [100 if _is_percent(c) else 1 for c in cols]
        name = latex_escape(r["name"] + (f" ({r['note']})" if r.get("note") else ""))
        body.append(f"{name} & {r['n']} & " + " & ".join(_fmt(v, True, sc, ci=False).replace(r" $\pm$ ", r"$\pm$")
                                                       for v, sc in zip(vals, scales)) + r" \\")
        ci = [f"{{\\scriptsize[{sc * v['ci_low']:.{_digits(sc)}f}, {sc * v['ci_high']:.{_digits(sc)}f}]}}"
              if v and v.get("ci95") is not None else "" for v, sc in zip(vals, scales)]
        if any(ci):
            body.append(" & & " + " & ".join(ci) + r" \\[2pt]")
    cap = latex_escape((caption + " " if caption else "") + _seed_caption(rows, forget_set))
    return ("% requires \\usepackage{booktabs}\n\\begin{table}[t]\n\\centering\n\\footnotesize\n"
            "\\setlength{\\tabcolsep}{3pt}\n\\begin{tabular}{lc" + "c" * len(cols) + "}\n\\toprule\n"
            f"method & $n$ & {head} \\\\\n\\midrule\n" + "\n".join(body) + "\n\\bottomrule\n\\end{tabular}\n"
            f"\\caption{{{cap}}}\n\\end{{table}}\n")


def latex_table(rows: Sequence[dict], caption: str = "", *, per_forget_set: bool = True) -> str:
    """A LaTeX ``table`` (needs ``booktabs``); every text field escaped with :func:`latex_escape`.
    Seed rows: mean ± std with the 95 % CI on a second line, pooled, then one table per forget set."""
    if rows and all(_is_seed_row(r) for r in rows):
        parts = [_tex_seed_table(rows, caption)]
        if per_forget_set:
            fss = sorted({f for r in rows for f in r["forget_sets"]}, key=_natural_key)
            parts += [_tex_seed_table(rows, caption, f) for f in fss]
        return "\n".join(parts)
    cols = " & ".join(f"{HEADER[h]} {s}" for h, s in COLUMNS)
    body = "\n".join(
        latex_escape(r["name"]) + " & "
        + " & ".join(_fmt(r["cells"].get(f"{h}_{s}"), latex=True) for h, s in COLUMNS) + r" \\"
        for r in rows)
    return ("\\begin{table}[t]\n\\centering\n\\small\n\\begin{tabular}{l" + "c" * len(COLUMNS) + "}\n\\toprule\n"
            f"method & {cols} \\\\\n\\midrule\n{body}\n\\bottomrule\n\\end{{tabular}}\n"
            f"\\caption{{{latex_escape(caption)} Test accuracy (\\%), mean $\\pm$ std over forget sets.}}\n"
            "\\end{table}\n")


def latex_tabular(header: Sequence[str], rows: Sequence[Sequence], align: str | None = None) -> str:
    """A booktabs ``tabular`` of already formatted cells; every cell and header is escaped."""
    align = align or "l" + "c" * (len(header) - 1)
    if len(align) != len(header) or any(len(r) != len(header) for r in rows):
        raise ValueError(f"latex_tabular: {len(header)} header cells, alignment {align!r} and rows must agree")
    line = lambda cells: " & ".join(latex_escape(c) for c in cells) + r" \\"
    return ("% requires \\usepackage{booktabs}\n\\begin{tabular}{" + align + "}\n\\toprule\n" + line(header)
            + "\n\\midrule\n" + "\n".join(line(r) for r in rows) + "\n\\bottomrule\n\\end{tabular}\n")


def write_table(workdir, name: str, rows: Sequence[dict], title: str, extra: dict | None = None, *,
                per_forget_set: bool = True) -> str:
    """Writes ``NAME.json``, ``NAME.md`` and ``NAME.tex`` into ``workdir``; returns the markdown
    (seed rows: pooled, then per forget set unless ``per_forget_set`` is False)."""
    workdir = pathlib.Path(workdir)
    md = markdown_table(rows, title, per_forget_set=per_forget_set)
    write_json_atomic(workdir / f"{name}.json", {"title": title, "rows": rows, **(extra or {})})
    write_text_atomic(workdir / f"{name}.md", md)
    write_text_atomic(workdir / f"{name}.tex", latex_table(rows, title + ".", per_forget_set=per_forget_set))
    return md


# ----------------------------------------------------------------------------- plots

#: ten colours, line styles and markers; series i gets colour i, style (i + i // 10) and
#: marker (i + 2 * (i // 10)), so every series in a plot looks different from every other
COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink",
           "tab:gray", "tab:olive", "tab:cyan")
LINESTYLES = ("-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)), (0, (1, 1)), (0, (8, 2, 2, 2)),
              (0, (5, 3, 1, 3)), (0, (2, 4)))
MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*", "<", ">")


def series_style(i: int) -> dict:
    """Matplotlib keywords of the ``i``-th series: its colour, line style and marker."""
    return {"color": COLOURS[i % 10], "linestyle": LINESTYLES[(i + i // 10) % 10],
            "marker": MARKERS[(i + 2 * (i // 10)) % 10]}


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _cell_value(cell, error: str, n_row=None):
    """``(mean, error half-length or NaN, label of the error)`` of a cell; missing ->
    ``(None, NaN, None)``; no error bar (NaN) from fewer than two values."""
    if cell is None or (isinstance(cell, Mapping) and cell.get("mean") is None):
        return None, math.nan, None
    if not isinstance(cell, Mapping):
        if n_row is not None and n_row < 2:
            return cell[0], math.nan, "none (one forget set)"
        return cell[0], cell[1], "std over forget sets" + (f" (n = {n_row})" if n_row else "")
    n = cell.get("n", 0)
    if n < 2:
        return cell["mean"], math.nan, "none (one seed)"
    if error == "ci95" and cell.get("ci95") is not None:
        return cell["mean"], cell["ci95"], f"95 % CI over seeds (t, n = {n})"
    return cell["mean"], cell["std"], f"std over seeds (n = {n})"


def bar_plot(rows: Sequence[dict], path, title: str, *, heads: Sequence[str] = ("full", "lp", "ncc"),
             split: str = "forget", error: str = "ci95") -> None:
    """Grouped bars: one metric (accuracy on ``split``, default forget) of each head per method.

    Error bars: legacy rows, std over forget sets; seed rows, the 95 % CI over seeds
    (``error="ci95"``; the std where n < 2 or ``error="std"``). What they are is said in the
    legend title. A bar at (nearly) 0 gets a marker and its value at the base, so a
    forget accuracy of 0 is visible. The legend sits outside the axes.
    """
    if error not in ("ci95", "std"):
        raise ValueError(f"bar_plot: error must be 'ci95' or 'std', got {error!r}")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6.0, 1.0 * len(rows) + 2.0), 3.8))
    x = np.arange(len(rows))
    width = 0.8 / len(heads)
    labels = set()
    for i, h in enumerate(heads):
        vals = [_cell_value(r["cells"].get(f"{h}_{split}"), error, r.get("n")) for r in rows]
        labels |= {v[2] for v in vals if v[2]}
        pos = x + (i - (len(heads) - 1) / 2) * width
        heights = [100 * v[0] if v[0] is not None else 0.0 for v in vals]
        colour = COLOURS[i % 10]
        ax.bar(pos, heights, width, label=HEADER.get(h, h), color=colour,
               yerr=[100 * v[1] for v in vals], capsize=2, error_kw={"elinewidth": 0.8})
        for p, hgt, v in zip(pos, heights, vals):
            if v[0] is None:
                ax.text(p, 1.0, "n/a", ha="center", va="bottom", fontsize=6, rotation=90, color="0.4")
            elif hgt < 1.0:   # a bar that would be invisible: mark the base and print its value
                ax.plot([p], [0.0], marker="v", color=colour, markeredgecolor="k", markersize=6, clip_on=False,
                        zorder=5)
                ax.hlines(0.0, p - width / 2, p + width / 2, colors=colour, linewidth=3, zorder=4, clip_on=False)
                ax.text(p, 1.5, f"{hgt:.1f}" if hgt > 0.05 else "0", ha="center", va="bottom", fontsize=8,
                        fontweight="bold", color=colour)
    ax.set_xticks(x, [r["name"] for r in rows], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(f"{split}-class test accuracy (%)" if split in ("forget", "retain") else f"{split} accuracy (%)")
    ax.set_ylim(0, 105)
    ax.set_xlim(-0.6, len(rows) - 0.4)
    ax.set_title("\n".join(textwrap.wrap(title, 80)), fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    legend_title = "error bars: " + "; ".join(sorted(labels)) if labels else None
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), title=legend_title, title_fontsize=7,
              frameon=False)
    if legend_title and len(legend_title) > 30:
        ax.get_legend().set_title("error bars:\n" + "\n".join(sorted(labels)))
    _save(fig, path)


def line_panels(panels: Mapping[str, Mapping], path, title: str, xlabel: str, ylabel: str, *,
                percent: bool = True, ylim=(-2, 102), integer_x: bool = False,
                xticklabels: Sequence[str] | None = None, error_label: str | None = None,
                note: str | None = None) -> None:
    """Line plots side by side, sharing the y axis and one legend outside the data.

    Args:
      panels: panel title -> series; a series is label -> ``(xs, ys)`` or ``(xs, ys, errs)``
        (``errs`` drawn as a band, say what they are in ``error_label``). A label keeps its
        colour, line style and marker (:func:`series_style`) in every panel. ``None`` in ys
        is a gap.
      percent: ys are fractions drawn as percentages.
      integer_x: integer x ticks at the points (``xticklabels`` names them).
      note: a line under the plot (e.g. "one seed").
    """
    plt = _plt()
    labels = list(dict.fromkeys(lab for series in panels.values() for lab in series))
    style = {lab: series_style(i) for i, lab in enumerate(labels)}
    scale = 100.0 if percent else 1.0
    n = max(1, len(panels))
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n + 2.4, 3.6), sharey=True, squeeze=False)
    for ax, (ptitle, series) in zip(axes[0], panels.items()):
        grid = set()
        for lab, s in series.items():
            xs = np.asarray(s[0], float)
            ys = np.asarray([np.nan if y is None else scale * y for y in s[1]], float)
            grid |= set(xs.tolist())
            ax.plot(xs, ys, label=lab, ms=4, lw=1.4, markeredgecolor="k", markeredgewidth=0.3, **style[lab])
            if len(s) > 2 and s[2] is not None:
                e = np.asarray([np.nan if v is None else scale * v for v in s[2]], float)
                ax.fill_between(xs, ys - e, ys + e, color=style[lab]["color"], alpha=0.15, lw=0)
        if integer_x or xticklabels is not None:
            ticks = sorted(grid)
            ax.set_xticks(ticks)
            if xticklabels is not None:
                ax.set_xticklabels(xticklabels, fontsize=8)
            else:
                ax.set_xticklabels([f"{t:g}" for t in ticks], fontsize=8)
        else:
            from matplotlib.ticker import MaxNLocator
            ax.xaxis.set_major_locator(MaxNLocator(nbins=8, integer=all(float(g).is_integer() for g in grid)))
        if ptitle:
            ax.set_title(ptitle, fontsize=9)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        if ylim is not None:
            ax.set_ylim(*ylim)
    axes[0][0].set_ylabel(ylabel)
    handles, labs = [], []
    for ax in axes[0]:
        for hd, lb in zip(*ax.get_legend_handles_labels()):
            if lb not in labs:
                handles.append(hd)
                labs.append(lb)
    fig.legend(handles, labs, loc="upper left", bbox_to_anchor=(1.0, 0.93), fontsize=7, frameon=False,
               title=error_label, title_fontsize=7)
    fig.suptitle("\n".join(textwrap.wrap(title, 90)), fontsize=10)
    if note:
        fig.text(0.01, 0.0, note, fontsize=7, color="0.3", ha="left", va="top")
    fig.tight_layout()
    _save(fig, path)


def line_plot(series: dict, path, title: str, xlabel: str, ylabel: str, **kw) -> None:
    """``series``: label -> ``(xs, ys)`` or ``(xs, ys, errs)``; ys as fractions, drawn as
    percentages; every series its own colour, line style and marker; the legend outside.
    Keywords as :func:`line_panels`."""
    line_panels({"": series}, path, title, xlabel, ylabel, **kw)


def _save(fig, path):
    """Saves atomically, the bounding box grown to hold the outside legend and the title."""
    plt = _plt()
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=120, bbox_inches="tight", pad_inches=0.1)
    plt.close(fig)
    tmp.replace(path)
