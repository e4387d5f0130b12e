"""Renders benchmarks/README.md from results.json (and attempts.json, results-gpu.json if present).

    .venv/bin/python benchmarks/render.py

Every number in the README comes from those files; the prose around them has none.
"""

from __future__ import annotations

import json
import pathlib

HERE = pathlib.Path(__file__).resolve().parent


def load(name):
    p = HERE / name
    return json.loads(p.read_text()) if p.exists() else None


def fmt_side(e, f):
    if "median_s" not in f:
        return "– (" + f["note"].split(":")[0] + ")" if f.get("note") else "error"
    if e["unit"] == "img/s":
        lo, hi = f["img_per_s_range"]
        return f"{f['img_per_s']:.1f} img/s ({lo:.1f}–{hi:.1f})"
    if e["unit"] == "FLOP/s":
        lo, hi = f["flop_per_s_range"]
        return f"{f['flop_per_s'] / 1e9:.1f} GFLOP/s ({lo / 1e9:.1f}–{hi / 1e9:.1f})"
    return f"{f['median_s']:.2f} s ({f['min_s']:.2f}–{f['max_s']:.2f})"


def fmt_ratio(r, paired=None):
    if r is None:
        return "–"
    s = f"**{r:.2f}**"
    if paired:
        s += f" ({paired['min']:.2f}–{paired['max']:.2f})"
    return s


def rss(f):
    return f"{f['peak_rss_mib']:.0f}" if "peak_rss_mib" in f else "–"


def busy(f):
    return f"{f['cores_busy']:.2f}" if f.get("cores_busy") is not None else "–"


def cpu(f):
    return f"{f['cpu_median_s']:.2f}" if f.get("cpu_median_s") is not None else "–"


def main_table(entries):
    rows = ["| benchmark | JAX: median (range) | PyTorch: median (range) | ratio PyTorch/JAX time (paired range) "
            "| peak RSS MiB JAX / PyTorch | CPU s per run JAX / PyTorch | cores busy JAX / PyTorch "
            "| PyTorch config |",
            "|---|---|---|---|---|---|---|---|"]
    for e in entries:
        j, t = e["jax"], e["torch"]
        jname = f"JAX {j.get('config', '')}" if j.get("config") not in (None, "default") else "JAX"
        rows.append(f"| `{e['name']}` | {fmt_side(e, j)} | {fmt_side(e, t)} | "
                    f"{fmt_ratio(e.get('ratio'), e.get('ratio_paired'))} | {rss(j)} / {rss(t)} | "
                    f"{cpu(j)} / {cpu(t)} | {busy(j)} / {busy(t)} | {t.get('config', '–')} |")
        if jname != "JAX":
            rows[-1] = rows[-1].replace(f"| `{e['name']}` |", f"| `{e['name']}` (JAX strategy: {j['config']}) |")
        for k, v in e.get("variants", {}).items():
            rows.append(f"| ↳ {k} | {fmt_side(e, v)} | | {fmt_ratio(v.get('ratio'), v.get('ratio_paired'))} | "
                        f"{rss(v)} / | {cpu(v)} / | {busy(v)} / | |")
    return "\n".join(rows)


def details(entries):
    out = []
    by = {e["name"]: e for e in entries}
    peak = by.get("peak_matmul")
    trains = [e for e in entries if e["name"].startswith("train_step/")]
    if peak and trains:
        out.append("### Hardware limit\n")
        out.append("FLOPs per image: XLA cost analysis of the compiled library train step (forward, "
                   "backward, update). Achieved FLOP/s = FLOPs per image × img/s; the peak is the "
                   "float32 matmul rate of `peak_matmul` measured in the same run (JAX: `jnp.dot`, "
                   "PyTorch: `torch.mm`).\n")
        out.append("| model | FLOPs / image | JAX GFLOP/s | JAX fraction of matmul peak | PyTorch GFLOP/s "
                   "| PyTorch fraction of matmul peak |")
        out.append("|---|---|---|---|---|---|")
        for e in trains:
            j, t = e["jax"], e["torch"]
            if "fraction_of_matmul_peak" not in j or "fraction_of_matmul_peak" not in t:
                continue
            out.append(f"| {e['name'].split('/')[1]} | {e['flops_per_image'] / 1e6:.1f} M | "
                       f"{j['achieved_flop_per_s'] / 1e9:.2f} | {100 * j['fraction_of_matmul_peak']:.0f} % | "
                       f"{t['achieved_flop_per_s'] / 1e9:.2f} | {100 * t['fraction_of_matmul_peak']:.0f} % |")
            for k, v in e.get("variants", {}).items():
                if "fraction_of_matmul_peak" in v:
                    out.append(f"| ↳ {k} | | {e['flops_per_image'] * v['img_per_s'] / 1e9:.2f} | "
                               f"{100 * v['fraction_of_matmul_peak']:.0f} % | | |")
        out.append("")
    ev = by.get("eval_suite")
    if ev:
        out.append("### Evaluation suite\n")
        if ev.get("status"):
            out.append(f"Status: {ev['status']}.\n")
        jd, td = ev["jax"].get("details", {}), ev["torch"].get("details", {})
        by_cfg = jd.get("by_config") or {ev["jax"].get("config", "jax"): jd}
        jparts = jd.get("parts_median_s", {})
        timings = {ev["jax"].get("config"): ev["jax"].get("median_s"),
                   **{c: v["median_s"] for c, v in ev["jax"].get("other_configs", {}).items()}}
        cols = list(by_cfg)
        out.append("| | " + " | ".join(f"JAX `{c}`" for c in cols) + " | PyTorch (paper protocol) |")
        out.append("|---|" + "---|" * len(cols) + "---|")

        def row(label, vals, fmt):
            out.append(f"| {label} | " + " | ".join("–" if v is None else fmt.format(v) for v in vals) + " |")

        for key, label in [("probe_acc", "linear-probe test accuracy"), ("ncc_acc", "NCC test accuracy"),
                           ("nc1", "NC1")]:
            row(label, [by_cfg[c].get(key) for c in cols] + [td.get(key)], "{:.4f}")
        row("NC metrics computed", [by_cfg[c].get("collapse_metrics", 1) for c in cols] + [1], "{}")
        for part in ("probe_s", "ncc_s", "collapse_s"):
            tpart = "nc1_s" if part == "collapse_s" else part
            nested = [jparts.get(c, {}) if isinstance(jparts.get(c), dict) else jparts for c in cols]
            row(f"time: {part[:-2]} (s, median)", [n.get(part, n.get(tpart)) for n in nested]
                + [td.get("parts_median_s", {}).get(tpart)], "{:.2f}")
        row("time: whole suite (s, median)", [timings.get(c) for c in cols] + [ev["torch"].get("median_s")], "{:.2f}")
        tm = ev["torch"].get("median_s")
        row("PyTorch time / JAX time", [tm / timings[c] if tm and timings.get(c) else None for c in cols] + [1.0],
            "{:.1f}x")
        out.append("")
        out.append(f"JAX: {jd.get('what', '')}. PyTorch: {td.get('what', '')}.\n")
    for name in ("sweep/8_seeds", "sweep/unlearn_10_classes"):
        e = by.get(name)
        if not e:
            continue
        j = e["jax"]
        out.append(f"### `{name}`\n")
        out.append(f"JAX strategy chosen (fastest median): **{j.get('config')}**. All JAX strategies:\n")
        out.append("| strategy | median s (range) | cores busy |")
        out.append("|---|---|---|")
        out.append(f"| {j['config']} | {j['median_s']:.2f} ({j['min_s']:.2f}–{j['max_s']:.2f}) | {busy(j)} |")
        for c, v in j.get("other_configs", {}).items():
            out.append(f"| {c} | {v['median_s']:.2f} (spread {v['spread_pct']:.0f} %) | "
                       f"{v['cores_busy']:.2f} |")
        out.append("")
        jd, td = j.get("details", {}), e["torch"].get("details", {})
        if "mean_test_acc" in jd:
            ja = ", ".join(f"{k} {v:.4f}" for k, v in jd["mean_test_acc"].items())
            ta = ", ".join(f"{k} {v:.4f}" for k, v in td.get("mean_test_acc", {}).items())
            out.append(f"Mean test accuracy over the seeds: JAX {ja}; PyTorch {ta}.\n")
        if "after_unlearning" in jd:
            fa = lambda d: ", ".join(f"{k}: forget {v['forget_acc']:.3f} / retain {v['retain_acc']:.3f}"  # noqa: E731
                                     for k, v in d.items())
            out.append(f"Original test accuracy: JAX {jd.get('original_test_acc', 0):.3f}, PyTorch "
                       f"{td.get('original_test_acc', 0):.3f}. After retain fine-tuning (mean over the 10 "
                       f"classes, test): JAX {fa(jd['after_unlearning'])}; PyTorch {fa(td.get('after_unlearning', {}))}.\n")
    return "\n".join(out)


def commands(entries):
    out = ["### Exact commands of each side\n",
           "Run by `run.py` in serve mode; add `--repeats N` to run one alone "
           "(`<digits.npz>`: `jaxunlearn.data.load_dataset('digits')` saved by run.py).\n"]
    for e in entries:
        out.append(f"* `{e['name']}`")
        for label, f in [("JAX", e["jax"]), ("PyTorch", e["torch"])] + [
                (k, v) for k, v in e.get("variants", {}).items()]:
            if f.get("command"):
                out.append(f"  * {label}: `{f['command']}`")
    return "\n".join(out) + "\n"


def attempts_table(att):
    out = []
    for e in att:
        if e.get("kind") == "note":
            figures = e.get("summary") or f"eager {e['eager_s']} s, jitted {e['jit_s']} s"
            out.append(f"#### `{e['name']}` ({e['date']})\n\n`{e['command']}`: {figures} (load average "
                       f"{e['loadavg']}). {e['decision']}.\n")
            continue
        t = e["torch"]
        out.append(f"#### `{e['name']}` ({e['date']})\n")
        tv = [(k.removeprefix("torch: "), v) for k, v in e.get("variants", {}).items() if k.startswith("torch")]
        out.append(f"PyTorch reference: {fmt_side(e, t)}, {t['cpu_median_s']:.2f} CPU s per run ({t.get('config')}"
                   + ("; " if t.get("other_configs") or tv else "")
                   + ", ".join(f"{c}: {v['median_s']:.2f} s/run" for c, v in t.get("other_configs", {}).items())
                   + "".join(f"; {k}: {fmt_side(e, v)}" for k, v in tv) + ").\n")
        if e.get("what"):
            out.append(f"{e['what']}; {e.get('label', '')}. Command: `{e.get('command', '')}`; load average "
                       f"during the runs: {', '.join(f'{x[0]:.1f}' for x in e.get('loadavg_during', []))}.\n")
        unit = "img/s median (range)" if e["unit"] == "img/s" else "wall s median (range)"
        out.append(f"| JAX configuration | {unit} | ratio PyTorch/JAX | CPU s per run (median) | cores busy |")
        out.append("|---|---|---|---|---|")
        j = e["jax"]
        first = "library default (host loop, no flags)" if e["unit"] == "img/s" else "library (this run's code)"
        rows = [(first, j, e.get("ratio"))]
        rows += [(k.removeprefix("jax: "), v, v.get("ratio")) for k, v in e.get("variants", {}).items()
                 if k.startswith("jax") or e["unit"] == "s"]
        for label, f, r in rows:
            if "median_s" not in f:
                out.append(f"| {label} | error | | | |")
                continue
            out.append(f"| {label} | {fmt_side(e, f)} | {fmt_ratio(r)} | {f['cpu_median_s']:.2f} | {busy(f)} |")
        out.append("")
    return "\n".join(out)


TEMPLATE = """# Benchmarks: jaxunlearn (JAX) vs PyTorch

Generated by `benchmarks/render.py` from `results.json`{att_src}; do not edit by hand.

* **Date (start of the run):** {date}
* **Command:** `{command}`
* **Machine:** {machine}
* **Versions:** {versions}

## How to run

```bash
bash benchmarks/setup_torch.sh                 # PyTorch side: benchmarks/.torch-venv
.venv/bin/python benchmarks/run.py             # main suite -> results.json, README.md
.venv/bin/python benchmarks/run.py --suite attempts   # speed-up attempts -> attempts.json
.venv/bin/python benchmarks/analyze_cli.py     # `jaxunlearn analyze` on 60k x 512 -> analyze_cli.json
.venv/bin/python benchmarks/cnn_ablation.py    # small CNN step: pool / BatchNorm variants -> cnn_ablation.json
.venv/bin/python benchmarks/cnn_bn_variants.py  # small CNN step: BatchNorm formulations (attempts/cnn_batchnorm)
.venv/bin/python benchmarks/cnn_xla_reduce.py   # small CNN step: YNNPACK reductions (attempts/cnn_xla_reduce)
.venv/bin/python benchmarks/cpu_opt_level.py --study  # XLA:CPU LLVM level 1 vs 3 (attempts/cpu_opt_level)
.venv/bin/python benchmarks/pool.py           # model pool, N = 64 per side (pool/64_per_side; --models 512)
.venv/bin/python benchmarks/train_command.py  # the whole train command (train_command/fashion_mnist)
benchmarks/.torch-venv/bin/python benchmarks/torch_profile_cnn.py   # PyTorch's BatchNorm share of its CNN step
.venv/bin/python benchmarks/render.py          # README.md from the JSON files
bash benchmarks/gpu.sh                         # one GPU -> results-gpu.json
```

Each benchmark starts one process per side (JAX in the project venv, PyTorch in
`benchmarks/.torch-venv`); peak RSS is that process's `ru_maxrss`. After set-up and one
untimed warm-up run per configuration, the runner interleaves the timed runs of all sides
(round r runs each side once, the order rotating), because the machine is shared and its
load changes from minute to minute. Figures are the median over the timed runs, with the
fastest and slowest run in parentheses. **ratio = PyTorch median time / JAX median time**
(> 1: JAX faster); "paired range" is the range of the per-round ratios. PyTorch on CPU is
timed with 1 thread and with its default thread count in the same process, and the faster
one is used (on a loaded machine OpenMP's spinning threads can make the default much slower).
"Cores busy" = process CPU time / wall time during the timed runs. Each side's full command
is in `results.json` (`jax.command`, `torch.command`).

Train steps: batch 128, SGD Nesterov momentum 0.9, weight decay 5e-4, constant learning
rate, each step gathering its batch from a uint8 dataset array (random images) and
normalising it. JAX uses the library (`train.make_step(net, train.supervised_loss, cfg)` in
`train.make_run_steps`, host loop on CPU); PyTorch uses `torch_models.py`, the same
architectures (`check_equivalence.py` loads Flax weights into them and compares logits and, in
float64, the training-mode loss gradient of every parameter).

## Results

{table}

{details}
{commands}
{attempts}
## Notes

{notes}
"""


NOTES = """* What the attempts show (numbers in the tables above): most of the JAX CPU train step
  went to weight-gradient (backward-filter) convolutions, which jaxlib 0.12 runs through
  YNNPACK by default; `XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=-INDIVIDUAL_CONVOLUTION`
  sends convolutions back to XLA's own Eigen kernels and cuts the step's CPU time the most.
  The small CNN's 2x2 max-pool differentiates through a variadic reduce-window with index
  tracking; a reshape + max is cheaper, but its gradient splits ties (constant background
  patches) and XLA fused its tie-count reduction with the next convolution's input gradient
  into a YNNPACK kernel ~2x slower than that convolution alone (profile, 2026-11-29). The
  library's pool (`models/cnn.py`) is now reshape + max with a custom VJP that routes each
  window's gradient to its first maximum, `nn.max_pool`'s and PyTorch's rule (tested equal to
  `nn.max_pool`; `check_equivalence.py` compares the float64 gradients with PyTorch's):
  +7 % train step over the plain reshape + max and +35 % over `nn.max_pool` (ablation
  table). XNNPACK / oneDNN flags, `xla_cpu_multi_thread_eigen=false` and donating the state
  change little; `lax.scan` over conv-net steps is far slower on CPU (the library's host-loop
  default is right); a GEMM-based weight gradient (`fastconv.py`) helps without the flag but
  loses to it. Two virtual CPU devices can only pay off when both cores are free.
* Timings come from a shared 2-core machine on which other jobs were running; the "cores
  busy" column shows how much CPU each side actually got. Compare sides within a row (their
  runs were interleaved), not rows across dates.
* The library's CPU defaults include the two changes the attempts found (the YNN flag, set by
  `jaxunlearn/__init__.py` at import on jaxlib 0.12, and the max-pool in `models/cnn.py`), so
  the main table's JAX column is the library as it is. The attempts
  table was measured before they moved into the library: its "library default" row is the
  old default and its flag / pool rows are the changes since adopted.
* The "2 CPU devices" variants run the library's own data-parallel path (what `jaxunlearn
  train --devices 2` does: two XLA CPU devices, the batch sharded, one jitted step per
  device pair); they pay off only when both cores are free.
* Where the small CNN's one-device step still goes (ablation table): without its three
  BatchNorms the step is 1.39x faster, so BatchNorm's forward and backward take ~28 % of the
  step, where PyTorch's profiler puts its own BatchNorm at 12-14 % of its step
  (`benchmarks/.torch-venv/bin/python benchmarks/torch_profile_cnn.py`). Scratch A/B runs of
  2026-11-29 (scripts not kept, so these are notes, not table figures): a hand-written
  BatchNorm VJP and a one-reduction statistics variant measured the same as Flax's; the
  convolutions ran at 80-160 GFLOP/s (the 14x14x32 -> 64 layer the slowest); im2col + GEMM and
  shifted-matmul formulations of the two 3x3 layers were 1.3-3.9x slower (forward + backward)
  than XLA's convolution; XLA flags (`xla_cpu_enable_concurrency_optimized_scheduler`, XNN
  graph fusion, removing YNN REDUCE/ELTWISE/DOT fusions) moved the step by less than the
  run-to-run spread. Kept as a script since 2026-12-01: `benchmarks/cnn_bn_variants.py` times
  four drop-in BatchNorms (channel sums as one GEMM or in two stages; JAX's gradient or a
  written-out VJP) against the library in one process; all were slower (`attempts/cnn_batchnorm`).
* JAX on GPU: `gpu.sh` (not run here; no GPU on this machine)."""


def extra_sections() -> str:
    """TFDS loading, k-NN memory and the like-for-like evaluation figures (their own JSON files)."""
    text = ""
    tf = load("tfds_load.json")
    if tf:
        text += ("\n## TFDS split loading (`tfds_load.json`)\n\nSources (see the script's docstring): `mock`, "
                 "`tfds.testing.mock_data`, whose Python generator makes each example as it is read (its "
                 "floor is that generator alone); `files`, a prepared ArrayRecord dataset of PNG records "
                 "on disk, as `tfds build --file_format array_record` writes it. Examples/s, median:\n\n"
                 "| split | source | examples | record by record (before) | batched (`data._read_split`) "
                 "| speed-up | mock generator alone (floor) | load average | measured with |\n"
                 "|---|---|---|---|---|---|---|---|---|\n")
        for r in tf["splits"]:
            e = r["examples_per_s"]
            floor = f"{e['mock_floor']:.0f}" if "mock_floor" in e else "–"
            text += (f"| {r['dataset']} {'x'.join(map(str, r['image_shape']))} | {r.get('source', 'mock')} | "
                     f"{r['num_examples']:,} | {e['record_by_record']:.0f} | {e['batched']:.0f} | "
                     f"**{r['speedup_batched_vs_record_by_record']:.2f}** | {floor} | "
                     f"{r['loadavg'][0]:.1f} | `{r.get('command', tf['command'])}`, {r.get('date', tf['date'])} |\n")
    km = load("knn_memory.json")
    if km:
        text += (f"\n## k-NN peak memory (`knn_memory.json`)\n\nMeasured {km['date']} with `{km['command']}`: "
                 f"cosine {km['k']}-NN of {km['queries']:,} queries, {km['dim']}-d float32 features, one process "
                 "per row; extra peak = peak RSS after k-NN minus the resident memory just before it. "
                 f"Predictions of the two variants agree: {km['variants_agree']}.\n\n"
                 )
        variants = list(dict.fromkeys(r["variant"] for r in km["rows"]))
        names = {"chunked": "chunked (default)", "query_chunks_only": "query chunks only (train_chunk=None; the code before also copied train_x)"}
        text += ("| train rows N | inputs MiB | " + " | ".join(f"extra peak MiB / s: {names.get(v, v)}" for v in variants)
                 + " |\n|---|---|" + "---|" * len(variants) + "\n")
        by = {}
        for r in km["rows"]:
            by.setdefault(r["n"], {})[r["variant"]] = r
        for n, v in sorted(by.items()):
            inputs = next((r["inputs_mib"] for r in v.values() if "inputs_mib" in r), None)
            cells = [f"{v[x]['extra_peak_mib']:.0f} / {v[x]['seconds']:.1f}" if "extra_peak_mib" in v.get(x, {})
                     else "error" for x in variants]
            text += f"| {n:,} | {inputs:.0f} | " + " | ".join(cells) + " |\n"
    el = load("eval_like.json")
    if el:
        text += (f"\n## Like-for-like evaluation figures (`eval_like.json`)\n\nMeasured {el['date']} with "
                 f"`{el['command']}` on {el['features'][0]:,} x {el['features'][1]} train / {el['test'][0]:,} test "
                 "features (`common.make_features`), median wall time, sides interleaved; load average "
                 f"{el['loadavg_start'][0]:.1f} at the start, {el['loadavg_end'][0]:.1f} at the end.\n\n"
                 "| comparison | JAX | reference | ratio reference/JAX time | accuracy JAX / reference |\n"
                 "|---|---|---|---|---|\n")
        lb = el.get("lbfgs_probe")
        if lb:
            sk = lb["sklearn_config"]
            text += (f"| L-BFGS probe: `heads.linear_probe_fit` vs scikit-learn `LogisticRegression` ({sk}) | "
                     f"{lb['median_s']['jax']:.2f} s | {lb['median_s'][sk]:.2f} s | **{lb['ratio_sklearn_over_jax']:.2f}** | "
                     f"{lb['test_accuracy']['jax']:.4f} / {lb['test_accuracy'][sk]:.4f} (predictions agree on "
                     f"{100 * lb['prediction_agreement']:.1f} %) |\n")
        nc = el.get("ncc_nc")
        if nc:
            npc = nc["numpy_config"]
            text += (f"| NCC + 10 NC metrics vs float64 NumPy ({npc}) | {nc['median_s']['jax']:.2f} s | "
                     f"{nc['median_s'][npc]:.2f} s | **{nc['ratio_numpy_over_jax']:.2f}** | NCC "
                     f"{nc['ncc_test_accuracy']['jax']:.4f} / {nc['ncc_test_accuracy'][npc]:.4f}; NC metrics' largest "
                     f"relative difference {nc['max_rel_diff']:.1e} |\n")
        ff = el.get("features_vs_forward")
        if ff:
            ips = ff["images_per_s"]
            text += (f"| feature extraction (`train.make_predict`) vs forward (logits only), {ff['what']} | "
                     f"{ips['features (make_predict)']:.0f} img/s | {ips['forward (logits only)']:.0f} img/s | "
                     f"extraction at **{ff['ratio_extract_over_forward_throughput']:.2f}** x forward throughput | – |\n")
        res = load("results.json") or []
        ev = next((e for e in res if e["name"] == "eval_suite"), None)
        if ev and "sgd" in ev["jax"].get("details", {}).get("by_config", {}):
            jd = ev["jax"]["details"]
            t_sgd = jd["parts_median_s"]["sgd"]["probe_s"]
            t_torch = ev["torch"].get("details", {}).get("parts_median_s", {}).get("probe_s")
            if t_torch:
                text += (f"| SGD probe protocol: `heads.linear_probe_sgd(standardize=True)` vs the same in PyTorch "
                         f"(`eval_suite` row, {ev['date']}) | {t_sgd:.2f} s | {t_torch:.2f} s | **{t_torch / t_sgd:.2f}** | "
                         f"{jd['by_config']['sgd']['probe_acc']:.4f} / {ev['torch']['details']['probe_acc']:.4f} |\n")
    return text


def main():
    res = load("results.json")
    att = load("attempts.json")
    if not res:
        raise SystemExit("benchmarks/results.json is missing: run benchmarks/run.py first")
    e0 = res[0]
    m = e0.get("machine", {})
    versions = []
    for e in res:
        for side in ("jax", "torch"):
            v = e[side].get("version")
            if v and f"{side} {v}" not in versions:
                versions.append(f"{side} {v}")
    machine = f"{m.get('platform')}, {m.get('cpus')} CPUs, Python (runner) {m.get('python')}"
    att_md = ""
    if att:
        att_md = ("## Speed-up attempts for the JAX train step\n\n"
                  f"From `attempts.json` (command: `{att[0]['command']}`). Each row is one JAX process "
                  "with the stated change, interleaved with the same PyTorch reference.\n\n"
                  + attempts_table(att))
    text = TEMPLATE.format(att_src=" and `attempts.json`" if att else "", date=e0["date"],
                           command=e0["command"], machine=machine, versions=", ".join(versions),
                           table=main_table(res), details=details(res), commands=commands(res), attempts=att_md, notes=NOTES)
    an = load("analyze_cli.json")
    if an:
        inner = an.get("metrics_runtime_s")
        rt = (f"{inner:.1f} s (the command's own `runtime_s`; the rest is start-up and reading the file)"
              if isinstance(inner, (int, float)) else ", ".join(f"{k} {v:.1f} s" for k, v in (inner or {}).items()))
        text += (f"\n## `jaxunlearn analyze` on 60,000 x 512 features (`analyze_cli.json`)\n\n"
                 f"{an['what']}. Wall time per run (median of {len(an['walls_s'])}): **{an['median_s']:.1f} s** "
                 f"(range {an['min_s']:.1f}–{an['max_s']:.1f}); inside the command: {rt}. "
                 f"Measured {an['date']} with `{an['command']}`, load average {an['machine'].get('loadavg')}.\n")
    abl = load("cnn_ablation.json")
    if abl:
        base = abl["variants"]["library"]["img_s_median"]
        rows = "\n".join(f"| {name} | {v['img_s_median']:.0f} ({v['img_s_min']:.0f}–{v['img_s_max']:.0f}) | "
                         f"{v['img_s_median'] / base:.2f} |" for name, v in abl["variants"].items())
        text += (f"\n## Small CNN train step: ablation in one process (`cnn_ablation.json`)\n\n"
                 f"{abl['what']}; {abl['rounds']} interleaved rounds of {abl['steps_per_run']} steps, "
                 f"median img/s (range). Measured {abl['date']} with `{abl['command'].strip()}`. "
                 "Variants are described in `cnn_ablation.py`; `no BatchNorm` is a diagnostic, not a model.\n\n"
                 "| variant | img/s | vs library |\n|---|---|---|\n" + rows + "\n")
    text += extra_sections()
    gpu = load("results-gpu.json")
    if isinstance(gpu, dict) and isinstance(gpu.get("suite"), list):
        text += (f"\n## GPU (`results-gpu.json`, {gpu['date']}, {gpu['total_wall_s']} s in all)\n\n"
                 + main_table(gpu["suite"]) + "\n\nSteps: " + "; ".join(gpu.get("status", [])) + "\n")
    elif isinstance(gpu, list):
        text += "\n## GPU (`results-gpu.json`)\n\n" + main_table(gpu) + "\n"
    (HERE / "README.md").write_text(text)
    print(f"wrote {HERE / 'README.md'}")


if __name__ == "__main__":
    main()
