"""2-D pictures (PCA; t-SNE on a subsample) of retain and forget test features before and
after unlearning (forget set 0): original, Retrain, the first baseline and its CMF variant."""

import numpy as np

from experiments.configs import MethodRun
from jaxunlearn import evaluate, runs


def run(study) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
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
    for proj in ("pca", "tsne"):
        fig, axes = plt.subplots(1, len(models), figsize=(3.2 * len(models), 3.2))
        for ax, (name, (net, state, head, _)) in zip(np.atleast_1d(axes), models.items()):
            # raw penultimate features (no head needed: only the test split is drawn)
            f = evaluate.extract(net, state, study.ds._replace(train_images=study.ds.test_images[:1],
                                                               train_labels=study.ds.test_labels[:1]), "linear")
            x = f.test_feats["features"][sub]
            z = PCA(2, random_state=0).fit_transform(x) if proj == "pca" else \
                TSNE(2, init="pca", random_state=0, perplexity=30, max_iter=400).fit_transform(x)
            ax.scatter(z[~forget, 0], z[~forget, 1], c=y[~forget], cmap="tab10", s=3, alpha=0.4, vmin=0, vmax=9)
            ax.scatter(z[forget, 0], z[forget, 1], c="k", s=6, marker="x", label="forget")
            ax.set_title(name, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            if proj == "pca":
                # how far the forget class sits from its nearest retain class, relative to spread
                mf = x[forget].mean(0)
                dists = [np.linalg.norm(mf - x[y == k].mean(0)) for k in np.unique(y[~forget])]
                stats[name] = {"forget_to_nearest_retain_mean": float(min(dists)),
                               "forget_spread": float(np.linalg.norm(x[forget] - mf, axis=1).mean())}
        np.atleast_1d(axes)[0].legend(fontsize=7)
        fig.suptitle(f"{c.dataset}: test features ({proj.upper()}), forget classes {fc} as black crosses", fontsize=9)
        fig.tight_layout()
        report_path = out / f"features_{proj}.png"
        fig.savefig(report_path, dpi=110)
        plt.close(fig)
    runs.write_json_atomic(out / "features.json", {"forget_classes": fc, "models": list(models), "stats": stats})
    lines = ["| model | forget mean to nearest retain mean | forget spread |", "|---|---|---|"]
    lines += [f"| {k} | {v['forget_to_nearest_retain_mean']:.3f} | {v['forget_spread']:.3f} |" for k, v in stats.items()]
    md = "### Feature geometry (forget set 0)\n\n" + "\n".join(lines) + "\n"
    runs.write_text_atomic(out / "features.md", md)
    return md
