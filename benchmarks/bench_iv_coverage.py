"""Does the internal-validation interval cover the final model's true AUC? A known answer by simulation.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_iv_coverage.py [--seeds 60] [--n 120] [--truth 2000]
        [--features 40] [--n-signal 3] [--signal 0.6] [--splits 5] [--repeats 4] [--out FILE.csv]

For each seed: a synthetic cohort's clinical table (`make_clinical`, effect 1) and SIMULATED deep features
(`simulated_deep_features`: `--n-signal` of `--features` columns carry the severity with strength `--signal`, weak
enough
that the LASSO often keeps no deep feature in a fold), drawn for `--n` + `--truth` women at once so that both parts
share the generator (the same signal columns); `--n` of them, at random, are the training patients, the other `--truth`
(2,000) an independent cohort. `internal_validation` (repeated CV only, `--splits` x `--repeats`) gives each model's
estimate and 95% CI from the training patients; the truth is the AUC, on the independent cohort, of the same model
fitted
on all training patients (the model a study would report). A DL model whose LASSO keeps no deep feature on all training
patients is NA (a stand-in) and is left out of DL's coverage.

Printed per model: seeds estimated, coverage of the truth, mean width, mean estimate - truth and its SD; the same in the
seeds where some fold was a stand-in (DL: the LASSO kept nothing; Composite: it kept no deep feature, so the fold's
model was the clinical one), with the Clinical model's width in those seeds; and, from the same fold tables, the
coverage the earlier construction (the wider of the influence-curve and the corrected repeated-CV intervals) and the
influence-curve interval alone would have had. Also checked: every model's stand-in count equals its folds with
`deep_kept == 0`.
"""
import argparse
import os
import time
import warnings

os.environ.setdefault("PE_RENAL_QUIET", "1")
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from pe_renal.models import ModelData, demo_data, make_models
from pe_renal.internal import fit_or_prevalence, internal_validation

MODELS = ("DL", "Clinical", "Composite")


def cohort(seed:int, n:int, truth:int, features:int, n_signal:int, signal:float)->tuple[ModelData, ModelData]:
    "Training patients and an independent cohort from one draw of the generator."
    d = demo_data(n=n + truth, effect=1.0, n_features=features, seed=seed, n_signal=n_signal, signal=signal)
    rng = np.random.default_rng([seed, 99])
    split = pd.Series("test", index=d.y.index, name="split")
    split.iloc[rng.choice(len(d.y), n, replace=False)] = "train"
    return ModelData(d.X, d.y, split, d.deep, d.numeric, d.categorical)


def one_seed(seed:int, n:int=120, truth:int=2000, features:int=40, n_signal:int=3, signal:float=0.6,
             splits:int=5, repeats:int=4)->pd.DataFrame:
    "One row per model: estimate, CI, the earlier CI, the truth, stand-in folds."
    d = cohort(seed, n, truth, features, n_signal, signal)
    models = make_models(d, lasso={"cv": 5})
    (X, y), (Xt, yt) = d.part("train"), d.part("test")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        iv = internal_validation(models, X, y, n_boot=0, n_splits=splits, n_repeats=repeats, seed=seed, n_jobs=1)
    rows = []
    for r in iv.summary.itertuples():
        final, stand_in = fit_or_prevalence(models[r.model], X, y.to_numpy())
        f = iv.cv.folds[iv.cv.folds["model"] == r.model]
        rows.append(dict(seed=seed, model=r.model, auc=r.auc, lo=r.lo, hi=r.hi,
                         lo_wider=min(r.lo_ic, r.lo_nb), hi_wider=max(r.hi_ic, r.hi_nb), lo_ic=r.lo_ic, hi_ic=r.hi_ic,
                         truth=np.nan if stand_in else roc_auc_score(yt, final.predict_proba(Xt)[:, 1]),
                         n_stand_in=r.n_no_features, n_deep_kept_0=int((f["deep_kept"] == 0).sum()), n_folds=len(f)))
    return pd.DataFrame(rows)


def summarise(res:pd.DataFrame)->pd.DataFrame:
    "Coverage, width and error per model, in all seeds with an estimate and in those with stand-in folds."
    r = res.dropna(subset=["auc", "truth"]).assign(
        cover=lambda x: (x["lo"] <= x["truth"]) & (x["truth"] <= x["hi"]), width=lambda x: x["hi"] - x["lo"],
        cover_wider=lambda x: (x["lo_wider"] <= x["truth"]) & (x["truth"] <= x["hi_wider"]),
        cover_ic=lambda x: (x["lo_ic"] <= x["truth"]) & (x["truth"] <= x["hi_ic"]) if "lo_ic" in x else np.nan,
        err=lambda x: x["auc"] - x["truth"])
    out = []
    for m in MODELS:
        a = r[r["model"] == m]
        s = a[a["n_stand_in"] > 0]
        clin = r[(r["model"] == "Clinical") & r["seed"].isin(s["seed"])]
        out.append(
            dict(
                model=m,
                seeds=len(a),
                covered=int(a["cover"].sum()),
                coverage=a["cover"].mean(),
                width=a["width"].mean(),
                mean_err=a["err"].mean(),
                sd_err=a["err"].std(),
                coverage_wider=a["cover_wider"].mean(),
                coverage_ic=a["cover_ic"].mean(),
                seeds_stand_in=len(s),
                covered_stand_in=int(s["cover"].sum()),
                width_stand_in=s["width"].mean(),
                clinical_width_same_seeds=clin["width"].mean(),
            )
        )
    return pd.DataFrame(out)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=60)
    p.add_argument("--first", type=int, default=0)
    p.add_argument("--n", type=int, default=120)
    p.add_argument("--truth", type=int, default=2000)
    p.add_argument("--features", type=int, default=40)
    p.add_argument("--n-signal", type=int, default=3)
    p.add_argument("--signal", type=float, default=0.6)
    p.add_argument("--splits", type=int, default=5)
    p.add_argument("--repeats", type=int, default=4)
    p.add_argument("--out", default=None, help="write the per-seed rows to this CSV")
    p.add_argument("--summarise", nargs="+", default=None, help="only print the summary of these per-seed CSVs")
    a = p.parse_args()
    if a.summarise:
        report(pd.concat([pd.read_csv(f) for f in a.summarise], ignore_index=True))
        return
    t0, rows = time.perf_counter(), []
    for seed in range(a.first, a.first + a.seeds):
        rows.append(one_seed(seed, a.n, a.truth, a.features, a.n_signal, a.signal, a.splits, a.repeats))
        print(f"seed {seed} done, {time.perf_counter() - t0:.0f} s", flush=True)
    res = pd.concat(rows, ignore_index=True)
    if a.out:
        res.to_csv(a.out, index=False)
    secs = time.perf_counter() - t0
    print(f"\n{a.seeds} seeds, {a.n} training patients, {a.truth} for the truth, {a.splits}-fold CV x {a.repeats}: "
          f"{secs:.0f} s ({secs / a.seeds:.1f} s per seed, one core)")
    report(res)


def report(res:pd.DataFrame):
    print(f"{res['seed'].nunique()} seeds; stand-in counts equal the folds with deep_kept == 0:",
          bool((res["n_stand_in"] == res["n_deep_kept_0"]).all()))
    with pd.option_context("display.width", 250, "display.max_columns", 20):
        print(summarise(res).round(3).to_string(index=False))


if __name__ == "__main__":
    main()
