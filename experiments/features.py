"""2-D pictures (PCA; t-SNE on a subsample) of retain and forget test features before and
after unlearning (forget set 0): original, Retrain, the first baseline and its CMF variant."""

import numpy as np

from experiments.configs import MethodRun
from jaxunlearn import evaluate, runs


def class_names(ds) -> list[str]:
    """Readable class names of the dataset (Fashion-MNIST's, else ``class k``)."""
    from jaxunlearn import data
    if ds.name.startswith("fashion") and ds.num_classes == len(data.FASHION_MNIST_CLASSES):
        return [f"{k} {n}" for k, n in enumerate(data.FASHION_MNIST_CLASSES)]
    return [f"class {k}" for k in range(ds.num_classes)]


def draw(pictures: dict, y: np.ndarray, forget_classes, names, path, title: str) -> None:
    """One panel per model of 2-D points ``pictures[model]`` (``[N, 2]``) with labels ``y``
    (``[N]``): retain classes coloured (tab10, one legend entry per class), forget classes as
    black crosses; the legend sits right of the panels."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    forget = np.isin(y, list(forget_classes))
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    fig, axes = plt.subplots(1, len(pictures), figsize=(3.2 * len(pictures) + 2.2, 3.4), squeeze=False)
    for ax, (name, z) in zip(axes[0], pictures.items()):
        ax.scatter(z[~forget, 0], z[~forget, 1], c=[cmap(int(k) % cmap.N) for k in y[~forget]], s=3, alpha=0.5)
        ax.scatter(z[forget, 0], z[forget, 1], c="k", s=7, marker="x", linewidths=0.6)
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [Line2D([], [], ls="", marker="o", ms=5, color=cmap(k % cmap.N), label=names[k])
               for k in range(len(names)) if k not in set(int(c) for c in forget_classes)]
    handles += [Line2D([], [], ls="", marker="x", ms=6, color="k", label=f"{names[int(k)]} (forget)")
                for k in forget_classes]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7, frameon=False,
               title="test class", title_fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)


def run(study) -> str:
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    c = study.config
    fc = list(c.forget_sets[0])
    models = {"Original": study.original(), "Retrain": study.retrained(0)}
    if c.table1:
        models[c.table1[0].title] = study.unlearned(c.table1[0], 0)
    if c.table3:
        models[c.table3[0].title] = study.unlearned(c.table3[0], 0)
    rng = np.random.default_rng(0)
    sub = np.sort(rng.choice(len(study.ds.test_labels), min(1000, len(study.ds.test_labels)), replace=False))
    y = study.ds.test_labels[sub]
    forget = np.isin(y, fc)
    out = study.out_dir("features")
    stats = {}
    names = class_names(study.ds)
    for proj in ("pca", "tsne"):
        pictures = {}
        for name, (net, state, head, _) in models.items():
            # raw penultimate features (no head needed: only the test split is drawn)
            f = evaluate.extract(net, state, study.ds._replace(train_images=study.ds.test_images[:1],
                                                               train_labels=study.ds.test_labels[:1]), "linear")
            x = f.test_feats["features"][sub]
            pictures[name] = PCA(2, random_state=0).fit_transform(x) if proj == "pca" else \
                TSNE(2, init="pca", random_state=0, perplexity=30, max_iter=400).fit_transform(x)
            if proj == "pca":
                # how far the forget class sits from its nearest retain class, relative to spread
                mf = x[forget].mean(0)
                dists = [np.linalg.norm(mf - x[y == k].mean(0)) for k in np.unique(y[~forget])]
                stats[name] = {"forget_to_nearest_retain_mean": float(min(dists)),
                               "forget_spread": float(np.linalg.norm(x[forget] - mf, axis=1).mean())}
        draw(pictures, y, fc, names, out / f"features_{proj}.png",
             f"{c.dataset}: test features ({proj.upper()}, {len(y)} samples)")
    runs.write_json_atomic(out / "features.json", {"forget_classes": fc, "models": list(models), "stats": stats})
    lines = ["| model | forget mean to nearest retain mean | forget spread |", "|---|---|---|"]
    lines += [f"| {k} | {v['forget_to_nearest_retain_mean']:.3f} | {v['forget_spread']:.3f} |" for k, v in stats.items()]
    md = f"### Feature geometry ({study.first_model_label()})\n\n" + "\n".join(lines) + "\n"
    runs.write_text_atomic(out / "features.md", md)
    return md
