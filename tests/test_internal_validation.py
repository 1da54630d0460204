"""Internal validation (pe_renal.internal.internal_validation): null and positive controls, the stand-in rule and the
count of stand-in folds (the composite's included), the contract written to run.json, the CV interval against
hand-computed answers, its coverage of 0.5 on null cohorts and of the final model's true AUC by simulation, and inner CV
folds that keep copies of a patient together."""
import json
import math
import statistics
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from pe_renal.lasso import LassoSelector, inner_folds, stratified_bootstrap
from pe_renal.models import (KAtGridEdge, ModelData, TunedClassifier, _warn_k_edge, demo_data, fit_models, make_models,
                             model_summary)
from pe_renal.internal import FLAG_SHARE, STAND_IN, cv_auc_ci, _no_feature_flag, auc_632plus, internal_validation

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))   # the coverage simulation's code

FAST = dict(n_boot=8, n_splits=3, n_repeats=2, n_jobs=1)
COLUMNS = ["model", "method", "auc", "lo", "hi", "n_resamples", "reason"]
NEW_COLUMNS = ["share_no_features", "flag", "lo_ic", "hi_ic", "lo_nb", "hi_nb"]


def quiet(fn, *a, **k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*a, **k)


@pytest.fixture(scope="module")
def null_runs():
    """Cohorts with no signal anywhere (effect=0), several seeds: internal validation of the three models, 4 bootstrap
    resamples (the .632+ estimates' means: 0.49-0.52 here, 0.50-0.53 with 8)."""
    out = []
    for seed in range(8):                                     # 8 x 140 training patients: the mean has an SD of ~0.02
        d = demo_data(n=200, effect=0, n_features=40, seed=seed)
        out.append(quiet(internal_validation, make_models(d), *d.part("train"), seed=seed, **(FAST | dict(n_boot=4)))
                   .summary.assign(seed=seed))
    return pd.concat(out, ignore_index=True)


@pytest.mark.slow
def test_null_control_is_centred_on_one_half_with_cis_covering_it(null_runs):
    s = null_runs.dropna(subset=["auc"])                      # a stand-in DL model reports NA, not a number
    means = s.groupby(["model", "key"])["auc"].mean()
    assert means.between(0.45, 0.55).all(), means
    # 95% CIs: about 1 in 20 misses 0.5 by design, so the share is checked, not every interval (on the paper-sized
    # cohorts of the notebook every interval covered 0.5)
    covers = (s["lo"] <= 0.5) & (0.5 <= s["hi"])
    assert covers.mean() >= 0.9, s.loc[~covers, ["seed", "model", "key", "auc", "lo", "hi"]]
    assert {"Clinical", "Composite"} <= set(s["model"])


def test_positive_control_is_near_a_large_held_out_set():
    """Fitted on 150 patients, validated internally; the test AUC of the same pipeline on 350 held-out patients (SE
    ~0.02).
    Both estimators refit on fewer patients (CV: 4/5; bootstrap: ~63% distinct), so they may sit a little below it."""
    d = demo_data(n=500, effect=1.0, n_features=100, seed=1)
    rng = np.random.default_rng(0)
    train = rng.choice(len(d.y), 150, replace=False)
    split = pd.Series("test", index=d.y.index, name="split")
    split.iloc[train] = "train"
    d = ModelData(d.X, d.y, split, d.deep, d.numeric, d.categorical)
    _, res = quiet(fit_models, d)
    iv = quiet(internal_validation, make_models(d), *d.part("train"), **FAST).summary
    for r in iv.itertuples():
        test = roc_auc_score(*res[r.model]["test"])
        assert test > 0.65 and abs(r.auc - test) < 0.10, (r.model, r.key, r.auc, test)


def test_stand_in_model_is_not_a_number():
    "The DL LASSO keeps nothing on all training patients (a prevalence stand-in): NA with the reason, in every method."
    d = demo_data(n=120, effect=0, n_features=300, seed=3)
    X, y = d.part("train")
    iv = quiet(internal_validation, make_models(d), X, y, n_boot=6, n_splits=3, n_repeats=1)
    dl = iv.summary[iv.summary["model"] == "DL"]
    assert dl["auc"].isna().all() and dl["lo"].isna().all() and (dl["reason"] == STAND_IN).all()
    assert (dl["n_no_features"] < dl["n_resamples"]).any()    # some resamples did keep deep features
    j = iv.to_json()
    assert j["DL"]["auc"] is None and j["DL"]["reason"] == STAND_IN
    assert j["Composite"]["auc"] is not None and j["Composite"]["reason"] is None


def test_contract():
    d = demo_data(n=100, effect=1.0, n_features=80, seed=2)
    iv = quiet(internal_validation, make_models(d), *d.part("train"), n_boot=3, n_splits=3, n_repeats=1)
    assert list(iv.summary.columns[:7]) == COLUMNS and set(NEW_COLUMNS) <= set(iv.summary.columns)
    j = json.loads(json.dumps(iv.to_json()))
    assert set(j) == {"DL", "Clinical", "Composite"}
    for v in j.values():
        assert set(v) == {"method", "auc", "lo", "hi", "n_resamples", "reason", "flag"}
        assert isinstance(v["method"], str) and isinstance(v["n_resamples"], int)
        assert v["lo"] <= v["auc"] <= v["hi"] and (v["flag"] is None or isinstance(v["flag"], str))
        assert "sqrt(v_ic + v_nb)" in v["method"] and "measured by simulation, not derived" in v["method"]
        assert "(K-1)/K of the patients" in v["method"] and "wider" not in v["method"]
    p = quiet(internal_validation, make_models(d), *d.part("train"), n_boot=3, n_splits=3, n_repeats=1, primary="632+")
    assert all(v["method"].startswith(".632+") and v["n_resamples"] == 3 for v in p.to_json().values())
    # the same seed gives the same numbers, in parallel too
    q = quiet(internal_validation, make_models(d), *d.part("train"), n_boot=3, n_splits=3, n_repeats=1, n_jobs=2)
    pd.testing.assert_frame_equal(iv.summary, q.summary)

# The CV interval. Known answers on hand-written fold tables: two repeats of four folds of 200 patients (50 held out
# each).
Z, T7 = 1.959964, 2.364624          # 97.5% quantiles (tables): standard normal; Student t with 8 - 1 degrees of freedom
SPREAD = [
    0.62,
    0.55,
    0.70,
    0.48,
    0.66,
    0.52,
    0.59,
    0.61,
]  # fold AUCs that vary: the corrected repeated-CV part is wider
TIGHT = [0.60, 0.61, 0.59, 0.60, 0.62, 0.58, 0.60, 0.60]    # fold AUCs that agree: the influence-curve part is wider
HIGH = [0.99, 0.97, 0.88, 1.00, 0.95, 0.99, 0.93, 0.98]     # near 1: the upper limit is clipped
MSQ = [0.30, 0.28, 0.35, 0.33, 0.31, 0.29, 0.27, 0.34]      # each fold's mean squared influence-curve value


def fold_table(aucs, msq, no_features=()):
    return pd.DataFrame(
        dict(
            repeat=[1] * 4 + [2] * 4, fold=[1, 2, 3, 4] * 2, auc=aucs, ic_msq=msq, n_train=150, n_test=50,
            no_features=[i in no_features for i in range(8)]
        )
    )


def by_hand(aucs, msq, share=1.0):
    """The mean fold AUC and the half-widths of both parts and of the reported interval, written out (`share` of the
    variance: 1 for the answer). Influence curve: z * sqrt(v_ic), v_ic = mean over repeats of the mean msq / n. Nadeau &
    Bengio: t(J - 1) * sqrt(v_nb), v_nb = (1/J + n_test/n_train) s². Reported: t(J - 1) * sqrt(v_ic + v_nb)."""
    auc = statistics.mean(aucs)
    v_ic = share * statistics.mean([statistics.mean(msq[:4]), statistics.mean(msq[4:])]) / 200
    v_nb = share * (1 / 8 + 50 / 150) * statistics.variance(aucs)
    return auc, Z * math.sqrt(v_ic), T7 * math.sqrt(v_nb), T7 * math.sqrt(v_ic + v_nb)


def clip(auc, h): return max(0.0, auc - h), min(1.0, auc + h)


@pytest.mark.parametrize("aucs, msq, wider", [(SPREAD, MSQ, "nb"), (TIGHT, MSQ, "ic"), (HIGH, [0.08] * 8, "nb")])
def test_cv_interval_known_answer(aucs, msq, wider):
    got = cv_auc_ci(fold_table(aucs, msq), 200)
    auc, h_ic, h_nb, h = by_hand(aucs, msq)
    assert got["auc"] == pytest.approx(auc, abs=1e-12)
    assert (got["lo_ic"], got["hi_ic"]) == pytest.approx(clip(auc, h_ic), abs=1e-6)
    assert (got["lo_nb"], got["hi_nb"]) == pytest.approx(clip(auc, h_nb), abs=1e-6)
    assert ("nb" if h_nb > h_ic else "ic") == wider
    assert (got["lo"], got["hi"]) == pytest.approx(clip(auc, h), abs=1e-6)     # the reported CI: the variances added
    assert h > max(h_ic, h_nb) + 0.005  # not the wider of the two
    if aucs is HIGH:
        assert got["hi"] == got["hi_nb"] == 1.0 and auc + h_nb > 1


def test_cv_interval_is_not_the_one_with_half_the_variance():
    """Half the variance makes an interval narrower by 1 - 1/sqrt(2) = 29% of its half-width; on these tables that
    is more
    than 0.005, far above the 1e-6 the known answers are checked to, so they would catch it."""
    for aucs in (SPREAD, TIGHT):
        got = cv_auc_ci(fold_table(aucs, MSQ), 200)
        auc, h_ic, h_nb, h = by_hand(aucs, MSQ, share=0.5)
        assert abs(got["hi_ic"] - (auc + h_ic)) > 0.005 and abs(got["hi_nb"] - (auc + h_nb)) > 0.005
        assert abs(got["hi"] - (auc + h)) > 0.005


def test_flag_when_a_quarter_of_the_folds_kept_no_feature():
    assert FLAG_SHARE == 0.25
    flag = _no_feature_flag(fold_table(SPREAD, MSQ, no_features=(1, 6))["no_features"])       # 2 of 8 folds
    assert "2 of 8 folds (25%" in flag and "prevalence stand-in" in flag
    assert _no_feature_flag(fold_table(SPREAD, MSQ, no_features=(1,))["no_features"]) is None  # 1 of 8
    assert _no_feature_flag(fold_table(SPREAD, MSQ)["no_features"]) is None
    comp = _no_feature_flag(fold_table(SPREAD, MSQ, no_features=(1, 6))["no_features"], composite=True)
    assert "2 of 8 folds (25%" in comp and "clinical model" in comp and "AUC 0.5" not in comp


def cv_ci_from_folds(f, n):
    """Both parts and the reported interval of one model from its fold rows, any number of folds and repeats (scipy's
    quantiles)."""
    from scipy.stats import norm, t
    J, auc = len(f), f["auc"].mean()
    v_ic = f.groupby("repeat")["ic_msq"].mean().mean() / n
    v_nb = (1 / J + (f["n_test"] / f["n_train"]).mean()) * f["auc"].var(ddof=1)
    return (
        auc,
        norm.ppf(0.975) * math.sqrt(v_ic),
        t.ppf(0.975, J - 1) * math.sqrt(v_nb),
        t.ppf(0.975, J - 1) * math.sqrt(v_ic + v_nb),
    )


N_NULL = 14


@pytest.fixture(scope="module")
def null_cv():
    """Null cohorts (effect=0: neither the clinical columns nor the simulated deep features carry the label), the DL and
    Clinical models, 3-fold CV x 2, no bootstrap; the first 14 cohorts (of 20) whose LASSO keeps a deep feature on all
    training patients (on the others DL is a stand-in, NA, and the cohort is skipped). About 18 s on one core."""
    from pe_renal.internal import fit_or_prevalence
    out, seed = [], 0
    while len(out) < N_NULL:
        d = demo_data(n=100, effect=0, n_features=40, seed=seed)
        X, y = d.part("train")
        models = make_models(d, lasso={"cv": 5})           # λ by 5-fold CV (10 by default): quicker, as many stand-ins
        if not fit_or_prevalence(models["DL"], X, y)[1]:
            iv = quiet(internal_validation, {m: models[m] for m in ("DL", "Clinical")}, X, y, n_boot=0, n_splits=3,
                       n_repeats=2, seed=seed, n_jobs=1)
            out.append((seed, len(y), iv))
        seed += 1
        assert seed < 100, "too few null cohorts in which the LASSO keeps a deep feature"
    return out


@pytest.mark.slow
def test_cv_interval_covers_one_half_on_null_cohorts(null_cv):
    s = pd.concat([iv.summary.assign(seed=seed) for seed, _, iv in null_cv], ignore_index=True).set_index(
        ["model", "seed"]
    )
    # every reported interval is the known answer recomputed from its own fold table
    for seed, n, iv in null_cv:
        for m, f in iv.cv.folds.groupby("model"):
            auc, h_ic, h_nb, h = cv_ci_from_folds(f, n)
            r = s.loc[(m, seed)]
            assert (r["lo_ic"], r["hi_ic"], r["lo_nb"], r["hi_nb"]) == pytest.approx(
                (*clip(auc, h_ic), *clip(auc, h_nb)), abs=1e-12
            )
            assert (r["lo"], r["hi"]) == pytest.approx(clip(auc, h), abs=1e-12)
            assert r["share_no_features"] == f["no_features"].mean()
            assert isinstance(r["flag"], str) == (f["no_features"].mean() >= FLAG_SHARE)
            assert iv.to_json()[m]["flag"] == (r["flag"] if isinstance(r["flag"], str) else None)
    assert s["auc"].notna().all() and s.groupby("model").size().eq(N_NULL).all()
    # mean of 14 CV AUCs (SD ~0.05-0.07 each, SE of the mean ~0.015-0.02; here 0.54 and 0.49, as on 40 cohorts). DL's
    # sits near 0.54: only cohorts whose LASSO kept a feature on all their training patients are kept, i.e. a chance
    # association of that feature with the label in the cohort, which the folds share; on 40 such cohorts (66 tried)
    # the 26 skipped averaged 0.49
    means = s.groupby("model")["auc"].mean()
    assert means.between(0.45, 0.55).all(), means
    # Coverage of 0.5: a correct 95% interval misses it Binomial(14, 0.05) times: P(more than 3 misses) = 0.0042 per
    # model, < 0.01 for both, so a correct method passes with > 99%. An interval of half that width (z = 0.98,
    # coverage 67%) passes with 27%; one with half the variance (coverage 83%) would pass with 80%: 14 cohorts cannot
    # tell it, the known answers above (and the recomputation from the folds here) can. (On 40 cohorts, with at most
    # 8 misses allowed, the half-width interval passed with 6%; measured there: 1 miss for DL, 0 for Clinical.)
    covers = (s["lo"] <= 0.5) & (0.5 <= s["hi"])
    misses = (~covers).groupby("model").sum()
    assert (misses <= 3).all(), (misses, s.loc[~covers, ["auc", "lo", "hi", "lo_ic", "hi_ic"]])
    # DL's interval not much narrower than the clinical one. Measured on 40 cohorts: covered 0.5 in 39/40 (DL) and 40/40
    # (Clinical), mean width 0.48 vs 0.54 (ratio 0.90; on these 14: 0.52 vs 0.51); the influence-curve part alone 0.27
    # vs 0.26 (a fold that scores everyone alike carries an uninformative score's influence term, not 0; with 0 it was
    # 0.19 vs 0.26). DL's AUCs do vary less (SD 0.053 vs 0.077: a share of its folds score 0.5 exactly), so equal widths
    # are not expected under the null; 0.7 guards against a collapse. (With signal, where DL's truth is the more
    # uncertain, DL's interval is the wider: test_cv_interval_covers_the_final_models_true_auc.)
    width = (s["hi"] - s["lo"]).groupby("model").mean()
    assert width["DL"] >= 0.7 * width["Clinical"], width
    assert ((s["hi"] - s["lo"]) >= (s["hi_ic"] - s["lo_ic"]) - 1e-12).all()


def test_positive_control_cv_interval_excludes_one_half():
    "With signal the reported CV interval (wider than either of its parts) of every model lies above 0.5."
    d = demo_data(n=200, effect=1.0, n_features=40, seed=5)  # lower limits 0.58-0.62
    s = quiet(
        internal_validation, make_models(d), *d.part("train"), n_boot=0, n_splits=3, n_repeats=2, n_jobs=1
    ).summary
    assert (s["lo"] > 0.5).all() and (s["lo"] <= s[["lo_ic", "lo_nb"]].min(axis=1) + 1e-12).all(), s[
        ["model", "auc", "lo", "hi"]
    ]
    assert s["flag"].isna().all()


def test_masked_estimates_keep_no_interval():
    """A model fine-tuned once on all training patients is not estimated: none of its intervals, nor a flag, is left in
    the table."""
    from pe_renal.stages_eval import FINETUNED_ONCE, mask_finetuned_once
    d = demo_data(n=100, effect=1.0, n_features=40, seed=2)
    models = make_models(d)
    iv = quiet(internal_validation, models, *d.part("train"), n_boot=2, n_splits=3, n_repeats=1, n_jobs=1)
    iv.summary.loc[iv.summary["model"] == "DL", "flag"] = "a flag"
    s = mask_finetuned_once(iv, models).summary
    deep = s["model"].isin(["DL", "Composite"])
    assert s.loc[deep, ["auc", "lo", "hi"] + NEW_COLUMNS[2:]].isna().all().all() and s.loc[deep, "flag"].isna().all()
    assert (s.loc[deep, "reason"] == FINETUNED_ONCE).all()
    pd.testing.assert_frame_equal(s[~deep], iv.summary[~deep.to_numpy()])


def test_632plus_formula():
    assert auc_632plus(0.9, 0.5) == pytest.approx(0.5)         # no better than chance out of bag: all overfitting
    assert auc_632plus(0.8, 0.8) == pytest.approx(0.8)         # no overfitting
    assert auc_632plus(0.8, 0.45) == pytest.approx(0.45)       # worse than chance out of bag: not floored at 0.5
    assert auc_632plus(0.45, 0.5) == pytest.approx(0.368 * 0.45 + 0.632 * 0.5)   # no apparent skill: plain .632
    # R = (0.9 - 0.7) / (0.9 - 0.5) = 0.5, w = 0.632 / (1 - 0.368 * 0.5)
    w = 0.632 / (1 - 0.184)
    assert auc_632plus(0.9, 0.7) == pytest.approx((1 - w) * 0.9 + w * 0.7)


def doubled_null(seed, n=60, p=100):
    "A cohort with no signal in which every patient appears twice, as in a bootstrap resample."
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    y = rng.permutation(np.r_[np.ones(n // 2), np.zeros(n - n // 2)]).astype(int)
    return np.r_[X, X], np.r_[y, y]


def test_inner_folds_keep_copies_of_a_patient_together():
    y = np.r_[np.ones(30), np.zeros(30)].astype(int)
    X = np.random.default_rng(0).normal(size=(60, 4))
    idx = stratified_bootstrap(y, 1, 0)[0]
    for tr, te in inner_folds(X[idx], y[idx], 5, 0):
        assert not set(idx[tr]) & set(idx[te])
    # without copies the folds are the plain stratified folds (results of unresampled fits unchanged)
    from sklearn.model_selection import StratifiedKFold
    for (a, b), (c, e) in zip(inner_folds(X, y, 5, 3), StratifiedKFold(5, shuffle=True, random_state=3).split(X, y)):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, e)


def test_lasso_cv_is_not_fooled_by_copies():
    "With copies on both sides of its folds the LASSO's CV favours small λ and keeps noise features."
    kept = [len(quiet(LassoSelector(cache=False).fit, *doubled_null(s)).selected_) for s in range(5)]
    assert np.mean(kept) < 10, kept


def test_knn_tuning_is_not_fooled_by_copies():
    "A copy of the patient in the training folds is her nearest neighbour: tuning AUC far above 0.5 on noise."
    grid = {"n_neighbors": [3], "weights": ["uniform"]}
    score = [TunedClassifier(param_grid=grid).fit(X[:, :5], y).best_score_ for X, y in map(doubled_null, range(12))]
    assert np.mean(score) < 0.58, score


def test_k_at_the_edge_of_its_grid_is_warned():
    grid = {"n_neighbors": [3, 5, 7], "weights": ["uniform"]}
    for k in (3, 7):
        with pytest.warns(KAtGridEdge, match=f"k={k}"):
            _warn_k_edge(grid, {"n_neighbors": k})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _warn_k_edge(grid, {"n_neighbors": 5})
        _warn_k_edge({"n_neighbors": [5]}, {"n_neighbors": 5})
    rng = np.random.default_rng(0)  # a strong smooth signal: the largest k wins
    y = np.r_[np.ones(60), np.zeros(60)].astype(int)
    X = rng.normal(2.0 * y[:, None], 1.0, (120, 2))
    with pytest.warns(KAtGridEdge, match="largest"):
        TunedClassifier(param_grid=grid).fit(X, y)


def test_model_summary_labels_the_tuning_auc_as_a_criterion():
    d = demo_data(n=100, effect=1.0, n_features=80, seed=2)
    fitted, _ = quiet(fit_models, d)
    s = model_summary(fitted)
    assert "tuning_cv_auc" not in s and "tuning_criterion_auc" in s
    assert "not a validation estimate" in s.attrs["notes"]["tuning_criterion_auc"].lower()


N_COVERAGE = 12


@pytest.mark.slow
def test_cv_interval_covers_the_final_models_true_auc():
    """Coverage of the truth by simulation, on 12 seeds with 5-fold CV x 1: the same simulation as
    `benchmarks/bench_iv_coverage.py`, whose 50-seed run with the study's 5-fold CV x 4 measures the coverage itself
    (benchmarks/results/iv_coverage.md; the README quotes it). Each seed: 120 training patients, 40 simulated deep
    features of which 3 carry a weak signal (the LASSO keeps no deep feature in some folds of most seeds), the
    generator's clinical columns; the truth is the AUC of the model fitted on all 120, on 2,000 independent patients of
    the same generator. About 16 s on one core."""
    from scipy.stats import binom
    from bench_iv_coverage import one_seed, summarise
    res = pd.concat([quiet(one_seed, seed, repeats=1) for seed in range(N_COVERAGE)], ignore_index=True)
    assert (res["n_stand_in"] == res["n_deep_kept_0"]).all()         # every model counts its stand-in folds
    s = summarise(res).set_index("model")
    assert (s["seeds_stand_in"][["DL", "Composite"]] >= 3).all(), s      # the stand-in case is exercised (5 and 7)
    assert s.loc["DL", "seeds"] >= 9                                     # DL is NA where its LASSO keeps nothing at all
    # Binomial margin: with n seeds a 95% interval misses Binomial(n, 0.05) times; the bound is its 99th percentile (3
    # misses of 10-12): a correct interval fails this with p = 0.001-0.002 per model; one covering 90% passes with
    # 97-99%, one covering 83% (the earlier DL interval's coverage) with 87-93%. 12 seeds cannot tell 95% from 90% or
    # 83%: the benchmark's run measures it. What they do tell: the influence-curve interval alone (below; DL 6 of 10
    # here) misses 4 times.
    for m, r in s.iterrows():
        assert r["seeds"] - r["covered"] <= binom.ppf(0.99, r["seeds"], 0.05), (m, r)
    # a negative control: the influence-curve interval alone (test sampling only, the fits held fixed) misses far more
    assert s["coverage_ic"].mean() < s["coverage"].mean() - 0.1, s
    # where folds were stand-ins the DL interval is not narrower than the clinical one (DL's error is the larger: its
    # truth depends on which deep features the final LASSO keeps)
    assert s.loc["DL", "width_stand_in"] >= s.loc["DL", "clinical_width_same_seeds"], s
    assert s.loc["DL", "sd_err"] > s.loc["Clinical", "sd_err"], s


RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "iv_coverage.csv"


@pytest.mark.skipif(not RESULTS.is_file(), reason="benchmark results not in this checkout")
def test_quoted_coverage_figures_are_the_benchmarks():
    "The coverage figures the README and 05a_internal quote are recomputed from the benchmark's per-seed rows."
    from bench_iv_coverage import summarise
    res = pd.read_csv(RESULTS)
    assert res["seed"].nunique() == 50 and (res["n_stand_in"] == res["n_deep_kept_0"]).all()
    s = summarise(res).set_index("model")
    root = RESULTS.parents[2]
    nb = "".join("".join(c["source"]) for c in json.loads((root / "nbs" / "05a_internal.ipynb").read_text())["cells"])
    readme = " ".join((root / "README.md").read_text(encoding="utf-8").split())
    counts = ("seeds", "covered", "seeds_stand_in", "covered_stand_in")
    dl, cl, co = (
        {k: int(v) if k in counts else v for k, v in s.loc[m].items()} for m in ("DL", "Clinical", "Composite")
    )
    quoted = [
        f"DL {dl['covered']} of {dl['seeds']} seeds ({dl['coverage']:.0%}; NA in {50 - dl['seeds']})",
        f"Clinical {cl['covered']} of {cl['seeds']} and Composite {co['covered']} of {co['seeds']} "
            f"({cl['coverage']:.0%})",
        f"mean widths {dl['width']:.3f}, {cl['width']:.3f} and {co['width']:.3f}",
        f"in the {dl['seeds_stand_in']} seeds with DL stand-in folds DL covered all {dl['covered_stand_in']}",
        f"width {dl['width_stand_in']:.3f} against Clinical's {dl['clinical_width_same_seeds']:.3f}",
        f"covered DL in {round(dl['coverage_wider'] * dl['seeds'])} of {dl['seeds']}, {dl['coverage_wider']:.0%}",
    ]
    assert co["coverage"] == cl["coverage"] and dl["covered_stand_in"] == dl["seeds_stand_in"]
    for q in quoted:
        assert q in readme, q
    nb = " ".join(nb.split())
    for q in (
        f"{dl['covered']} of {dl['seeds']} seeds for DL ({dl['coverage']:.0%}; NA in {50 - dl['seeds']})",
        f"{cl['covered']} of {cl['seeds']} for Clinical and {co['covered']} of {co['seeds']} for Composite",
        f"mean widths {dl['width']:.3f}, {cl['width']:.3f} and {co['width']:.3f}",
        f"covered all {dl['covered_stand_in']}, width {dl['width_stand_in']:.3f} against Clinical's "
        f"{dl['clinical_width_same_seeds']:.3f}",
        f"Composite: {co['covered_stand_in']} of {co['seeds_stand_in']}",
        f"covered DL in {round(dl['coverage_wider'] * dl['seeds'])} of {dl['seeds']} ({dl['coverage_wider']:.0%})",
    ):
        assert q in nb, q


def test_influence_curve_term_is_delongs_variance_at_any_prevalence():
    """A validation fold's mean squared influence-curve value over its n patients, divided by n, is DeLong's variance
    of the AUC (placement variances over cases and over controls, ddof 0; pe_renal.evaluation's placements) when the
    prevalence is the fold's own: a case's term is scaled by the prevalence, a control's by 1 - prevalence, which an
    unbalanced fold (30 cases of 120, ties included) tells apart."""
    from pe_renal.evaluation import delong_placements
    from pe_renal.internal import _ic_msq
    rng = np.random.default_rng(3)
    y = rng.permutation(np.r_[np.ones(30, int), np.zeros(90, int)])
    s = np.round(rng.normal(0.8 * y, 1), 1)
    _, v10, v01 = delong_placements(y, s)
    assert _ic_msq(y, s, 0.25) / 120 == pytest.approx(v10.var() / 30 + v01.var() / 90, rel=1e-12)
    assert _ic_msq(y, np.zeros(120), 0.25) == pytest.approx((4 + 4 / 3) / 12)      # a stand-in: a coin's variance


def test_632plus_row_is_efrons_formula_of_the_mean_out_of_bag_auc():
    """The .632+ row recomputed from raw ingredients with a plain logistic regression: each resample's out-of-bag AUC
    is that of the model fitted on the resample and scored on the patients it left out (scikit-learn); the estimate is
    Efron & Tibshirani's formula, written out here, of the apparent AUC and the MEAN out-of-bag AUC (not the mean of
    per-resample estimates), and the interval the 2.5-97.5 percentiles of the per-resample estimates."""
    from sklearn.linear_model import LogisticRegression
    from pe_renal.lasso import stratified_bootstrap
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(80, 4)), columns=list("abcd"))
    y = (rng.random(80) < 1 / (1 + np.exp(-1.5 * X["a"]))).astype(int)
    iv = internal_validation({"LR": LogisticRegression()}, X, y, n_boot=20, n_splits=3, n_repeats=1, seed=5)
    oob = []
    for idx in stratified_bootstrap(y, 20, 5):
        out = np.setdiff1d(np.arange(80), idx)
        s = LogisticRegression().fit(X.iloc[idx], y[idx]).predict_proba(X.iloc[out])[:, 1]
        oob.append(roc_auc_score(y[out], s))
    np.testing.assert_allclose(iv.bootstrap["auc_oob"], oob, rtol=1e-10)
    app = roc_auc_score(y, LogisticRegression().fit(X, y).predict_proba(X)[:, 1])

    def efron(a):
        r = min(max((app - a) / (app - 0.5), 0), 1)
        w = 0.632 / (1 - 0.368 * r)
        return (1 - w) * app + w * a
    row = iv.summary.set_index("key").loc["632+"]
    assert row["apparent_auc"] == pytest.approx(app, rel=1e-12)
    assert row["auc"] == pytest.approx(efron(np.mean(oob)), rel=1e-12)
    assert [row["lo"], row["hi"]] == pytest.approx(np.percentile([efron(a) for a in oob], [2.5, 97.5]), rel=1e-12)
    assert abs(efron(np.mean(oob)) - np.mean([efron(a) for a in oob])) > 1e-4     # the two orders differ here
