"""SHAP and calibration-CI speed, before and after, in one run: the figures quoted for them come from here.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_explain_eval.py [--n 279] [--test 9]

- SHAP of the composite KNN on `--test` test patients (demo data, 300 simulated deep features, 25 background patients),
  in a fresh process each so that shap's one-off numba compilation counts where it happens: shap's own way (its default
  batches, its helpers compiled) against `explain_model` (one call per patient, helpers interpreted). Values compared.
- Calibration slope/intercept CIs (2000 bootstrap resamples, 3 models, one test set): the one-by-one Newton fits the
  bootstrap used before against `_recalibrate_many`, which fits all resamples at once. Results compared.
"""
import argparse
import json
import subprocess
import sys
import time
import numpy as np

p = argparse.ArgumentParser()
p.add_argument("--n", type=int, default=279)
p.add_argument("--test", type=int, default=9)
p.add_argument("--child", default=None)
a = p.parse_args()

if a.child:  # one SHAP measurement, in its own process
    import warnings

    warnings.simplefilter("ignore")
    from pe_renal.models import demo_data, fit_models
    from pe_renal.shap import explain_model

    d = demo_data(n=a.n, n_features=300)
    fitted, _ = fit_models(d)
    (Xtr, _), (Xte, _) = d.part("train"), d.part("test")
    if a.child == "shap_default":                              # shap's own batching, compiled helpers
        import shap.explainers._permutation as perm
        call = perm.PermutationExplainer.__call__
        perm.PermutationExplainer.__call__ = lambda self, *x, **k: call(self, *x, **{**k, "batch_size": "auto"})
    t = time.perf_counter()
    ex = explain_model(fitted["Composite"], Xtr, Xte.iloc[:a.test], compiled=a.child == "shap_default")
    print(json.dumps({"seconds": time.perf_counter() - t, "values": np.asarray(ex.values).tolist()}))
    sys.exit()

out = {}
for mode in ("shap_default", "shap_pe_renal"):
    r = subprocess.run([sys.executable, __file__, "--n", str(a.n), "--test", str(a.test), "--child", mode],
                       capture_output=True, text=True, check=True)
    out[mode] = json.loads(r.stdout.strip().splitlines()[-1])
diff = np.abs(np.array(out["shap_default"]["values"]) - np.array(out["shap_pe_renal"]["values"])).max()
s0, s1 = out["shap_default"]["seconds"], out["shap_pe_renal"]["seconds"]
print(
    f"SHAP, {a.test} test patients: shap's way {s0:.2f} s, explain_model {s1:.2f} s, ratio {s0 / s1:.1f}x, "
        f"max |diff| {diff:.1e}"
)

from pe_renal.calibration import _recalibrate_many, smoothed_probabilities  # noqa: E402  (the second part of the benchmark)
rng = np.random.default_rng(0)
n = 84
y = rng.permutation(np.r_[np.ones(45), np.zeros(n - 45)])
ps, _ = smoothed_probabilities(np.round(np.clip(0.5 + 0.3 * (y - 0.5) + rng.normal(0, 0.25, n), 0, 1) * 10) / 10, 10)
x = np.log(ps / (1 - ps))
idx = rng.integers(0, n, (2000, n))


def one_by_one(yy, xx):  # the bootstrap's earlier loop: one Newton fit per resample
    res = []
    for yr, xr in zip(yy, xx):
        b = np.zeros(2)
        X = np.column_stack([np.ones_like(xr), xr])
        slope = np.nan
        for _ in range(100):
            mu = 0.5 * (1 + np.tanh(0.5 * (X @ b)))
            H = X.T @ (X * (mu * (1 - mu))[:, None])
            try:
                step = np.linalg.solve(H, X.T @ (yr - mu))
            except np.linalg.LinAlgError:
                break
            b += step
            if not np.isfinite(b).all() or np.abs(b).max() > 1e3:
                break
            if np.abs(step).max() < 1e-10:
                slope = float(b[1])
                break
        res.append(slope)
    return np.array(res)


t = time.perf_counter()
for _ in range(3):
    old = one_by_one(y[idx], x[idx])
t_old = time.perf_counter() - t
t = time.perf_counter()
for _ in range(3):
    new = _recalibrate_many(y[idx], x[idx])[:, 0]
t_new = time.perf_counter() - t
both = np.isfinite(old) & np.isfinite(new)
print(
    f"calibration CIs, 3 models x 2000 resamples of {n}: one by one {t_old:.2f} s, all at once {t_new:.2f} s, "
    f"ratio {t_old / t_new:.1f}x; slopes agree to {np.abs(old[both] - new[both]).max():.1e} on {both.sum()} resamples "
    f"(no slope: {np.isnan(old).sum()} one by one, {np.isnan(new).sum()} all at once)"
)
