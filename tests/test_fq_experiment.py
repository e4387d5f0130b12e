"""The forgetting-quality experiment's floors: Retrain vs Retrain with linear heads and, for
the + CMF rows, through CMF heads (what those rows are compared with)."""

import numpy as np

from experiments import forgetting_quality as experiment
from jaxunlearn import forgetting_quality as fq, pool as pool_lib


def test_cmf_rows_get_a_floor_through_cmf_heads(tmp_path):
    """``run_pools`` adds ``retrain-cmf``: F of the two halves of the 2N retrained models as
    the CMF pool reads them (CMF-head logits), recomputed here from the stored logits with the
    metric functions; it differs from the linear-head floor; the table puts it before the
    first + CMF row."""
    cfg = experiment.FQConfig("digits", "mlp", "3", models=3, batch=3, epochs=2, evaluated=1,
                              methods=(("random_label", "full"), ("random_label", "cmf")))
    out = experiment.run_pools(cfg, tmp_path / "class", cfg.forget, cfg.methods, log=lambda *_: None)
    assert {"retrain-full", "retrain-cmf", "random_label-full", "random_label-cmf"} <= set(out)
    p = pool_lib.load_pool(tmp_path / "class", "random_label", "cmf")
    base = pool_lib.load_pool(tmp_path / "class", None)
    lab = p["labels"]["forget"]
    for res, pool in ((out["retrain-cmf"], p), (out["retrain-full"], base)):
        phi = np.asarray(fq.phi(pool["retrained"]["logits"]["forget"], lab))
        assert phi.shape[0] == 2 * cfg.models
        eps = fq.example_epsilons(phi[cfg.models:], phi[:cfg.models])["eps"]
        assert res["F"] == fq.forgetting_quality(eps)
    assert p["retrained"]["head"] == "cmf"
    assert not np.allclose(p["retrained"]["logits"]["forget"], base["retrained"]["logits"]["forget"])
    order = experiment.row_order(cfg.methods)
    assert order == [("retrain", "full"), ("random_label", "full"), ("retrain", "cmf"), ("random_label", "cmf")]
    rows = experiment.table_rows(out, None, order)
    assert [r[0] for r in rows][2] == "Retrain, CMF heads (floor of the + CMF rows)"
