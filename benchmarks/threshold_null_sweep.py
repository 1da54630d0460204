"""Threshold-metric intervals over 15 frozen no-signal cohorts: how many held-out rows have a zero-width interval
(lo == hi)
with the Wilson score intervals of pe_renal.evaluation, and how many the stratified percentile bootstrap they replaced
gave; and how often each Wilson interval covers the metric's truth.

Each cohort: 150 synthetic women with no signal anywhere (`demo_data(effect=0)`: clinical values and simulated deep
features unrelated to the label), split 7:3, the three KNN models fitted as the study fits them; thresholds by Youden's
index on the out-of-fold scores of the training patients (5-fold CV, one repeat: the study pools four) as the study
does,
and on the in-sample training scores, as `performance_table` does without out-of-fold thresholds. Under the null a
model's score is independent of the label, so at a fixed threshold t the truth of sensitivity and of 1 - specificity is
the same share P(score >= t), estimated here from the model's scores of 2,000 further null women.

    OMP_NUM_THREADS=1 python benchmarks/threshold_null_sweep.py     # about 5 minutes on 2 cores
"""
import warnings

import numpy as np
import pandas as pd

from pe_renal.evaluation import (METRICS, _counts, _rates, _strat_boot_idx, check_scores, performance_table,
                                 youden_threshold)
from pe_renal.models import demo_data, fit_models, make_models
from pe_renal.internal import internal_validation


def old_stratified_bootstrap(y, s, th, n_boot=2000, seed=42):
    "The intervals before: every metric by a stratified percentile bootstrap (class sizes fixed)."
    y, s = check_scores(y, s)
    pred = s >= th
    idx = _strat_boot_idx(y, n_boot, np.random.default_rng(seed))
    boot = _rates(*_counts(y[idx], pred[idx]))
    q = lambda v, p: float(np.nanquantile(v, p)) if np.isfinite(v).any() else np.nan
    return {k: (q(boot[k], 0.025), q(boot[k], 0.975)) for k in METRICS}


def main(seeds=range(15)):
    rows = []
    for seed in seeds:
        data = demo_data(n=150, seed=seed, effect=0, n_features=256)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fitted, results = fit_models(data)
            fresh = demo_data(n=2000, seed=1000 + seed, effect=0, n_features=256)
            Xf = pd.concat([fresh.part("train")[0], fresh.part("test")[0]])
            X, y = data.part("train")
            oof = internal_validation(make_models(data), X, y, n_boot=0, n_splits=5, n_repeats=1, seed=seed).oof
        y = np.asarray(y)
        oof_th = {m: youden_threshold(y[o["row"]], o["score"]) for m, o in oof.groupby("model") if m in results}
        for rule, th in (("out-of-fold", oof_th), ("in-sample", None)):
            rows += sweep_rows(seed, rule, fitted, results, th, Xf)
    return summarise(pd.DataFrame(rows))


def sweep_rows(seed, rule, fitted, results, thresholds, Xf):
    "One row per model and threshold metric of the held-out patients."
    rows = []
    perf = performance_table(results, n_boot=2000, seed=seed, thresholds=thresholds).set_index(["model", "cohort"])
    for m in results:
        r = perf.loc[(m, "test")]
        old = old_stratified_bootstrap(*results[m]["test"], r["threshold"])
        share = float((fitted[m].predict_proba(Xf)[:, 1] >= r["threshold"]).mean())   # P(score >= t) under the null
        truth = dict(sensitivity=share, specificity=1 - share)
        for k in METRICS:
            lo, hi = r[f"{k}_lo"], r[f"{k}_hi"]
            rows.append(dict(seed=seed, rule=rule, model=m, metric=k, value=r[k], lo=lo, hi=hi, zero_width=lo == hi,
                             no_interval=not (np.isfinite(lo) and np.isfinite(hi)), note=r["ci_note"],
                             old_lo=old[k][0], old_hi=old[k][1], old_zero_width=old[k][0] == old[k][1],
                             covers=float(lo <= truth[k] <= hi) if k in truth and np.isfinite(lo) else np.nan))
    return rows


def summarise(t:pd.DataFrame)->pd.DataFrame:
    for rule, g in t.groupby("rule", sort=False):
        print(
            f"thresholds on {rule} scores: {g['seed'].nunique()} null cohorts, {len(g)} held-out threshold-metric rows "
            f"({g.groupby(['seed', 'model']).ngroups} fitted models)"
        )
        print(f"  zero-width rows (lo == hi): now {int(g['zero_width'].sum())}, "
              f"with the old stratified bootstrap {int(g['old_zero_width'].sum())}")
        print(f"  rows without an interval (NA with a note): {int(g['no_interval'].sum())} "
              f"{sorted(set(n for n in g.loc[g['no_interval'], 'note'] if n))}")
        cov = g.dropna(subset=["covers"])
        print("  Wilson coverage of the truth P(score >= t) under the null:",
              {k: f"{c['covers'].mean():.3f} ({int(c['covers'].sum())}/{len(c)})" for k, c in cov.groupby("metric")})
    return t


if __name__ == "__main__":
    main()
