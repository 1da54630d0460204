"""How long the whole modelling stage takes on the default demo size.

    .venv/bin/python benchmarks/bench_models.py [--n 279] [--features 2048] [--splits 5] [--repeats 3] [--boot 25]
    [--jobs 2]

The data: the default synthetic cohort (279 women, 7:3 split -> 195 training patients) with 2048
SIMULATED deep features (pe_renal.lasso.simulated_deep_features) and its clinical table.
Steps timed: the LASSO on the training deep features; the three tuned KNN models (DL, Clinical,
Composite; the DL and composite models reuse the LASSO from the in-memory cache); repeated stratified
CV of the three whole pipelines on the training set; Harrell's bootstrap optimism correction.
The defaults are those of repeated_cv (5-fold x 3 repeats) and bootstrap_optimism (25 resamples).
Aim: under 2 minutes on a 2-core machine.
"""
import argparse
import os
import time

os.environ.setdefault("PE_RENAL_QUIET", "1")

from pe_renal.lasso import LassoSelector, lasso_cache_clear, lasso_cache_info
from pe_renal.models import demo_data, fit_models, make_models, model_summary
from pe_renal.internal import bootstrap_optimism, repeated_cv
from sklearn.metrics import roc_auc_score


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=279, help="patients")
    ap.add_argument("--features", type=int, default=2048, help="simulated deep features")
    ap.add_argument("--splits", type=int, default=5, help="folds of the repeated CV")
    ap.add_argument("--repeats", type=int, default=3, help="repeats of the repeated CV")
    ap.add_argument("--boot", type=int, default=25, help="bootstrap resamples of the optimism correction")
    ap.add_argument("--jobs", type=int, default=2, help="parallel workers for repeated CV and bootstrap")
    a = ap.parse_args()
    print(f"cores: {os.cpu_count()}  workers: {a.jobs}")
    times = {}
    t = time.perf_counter()
    data = demo_data(n=a.n, n_features=a.features)
    times["demo data (cohort table + simulated features)"] = time.perf_counter() - t
    print(data)
    Xtr, ytr = data.part("train")

    lasso_cache_clear()
    t = time.perf_counter()
    sel = LassoSelector().fit(Xtr[data.deep], ytr)
    times[f"LASSO, 10-fold CV x {len(sel.alphas_)} lambdas ({len(ytr)} x {len(data.deep)})"] = time.perf_counter() - t

    t = time.perf_counter()
    fitted, results = fit_models(data)
    times["three tuned KNN models (LASSO from cache)"] = time.perf_counter() - t

    models = make_models(data)
    t = time.perf_counter()
    cv = repeated_cv(models, Xtr, ytr, n_splits=a.splits, n_repeats=a.repeats, n_jobs=a.jobs)
    times[f"repeated CV, {a.splits}-fold x {a.repeats} repeats = {a.splits * a.repeats} refits of each pipeline"] = (
        time.perf_counter() - t
    )

    t = time.perf_counter()
    boot = bootstrap_optimism(models, Xtr, ytr, n_boot=a.boot, n_jobs=a.jobs)
    times[f"bootstrap optimism, {a.boot} resamples (+ 1 apparent fit)"] = time.perf_counter() - t

    w = max(map(len, times))
    print(f"\n{'step':<{w}}  seconds")
    for k, v in times.items():
        print(f"{k:<{w}}  {v:7.1f}")
    modelling = sum(v for k, v in times.items() if not k.startswith("demo data"))
    print(f"{'modelling stage total (without demo data)':<{w}}  {modelling:7.1f}")
    print(f"{'total':<{w}}  {sum(times.values()):7.1f}")
    print(
        f"\nLASSO kept {len(sel.selected_)} features (lambda-min {sel.alpha_min_:.4f}); cache after "
            f"fitting: {lasso_cache_info()}"
    )
    print(model_summary(fitted)[["model", "deep_kept", "settings"]].to_string(index=False))
    print("\ntest AUC:", ", ".join(f"{m} {roc_auc_score(*r['test']):.3f}" for m, r in results.items()))
    print("\nrepeated CV (fold AUCs):\n" + cv.summary.round(3).to_string(index=False))
    print("\nbootstrap optimism:\n" + boot.summary.round(3).to_string(index=False))


if __name__ == "__main__":
    main()
