"""Threshold metrics, calibration and decision curves: behaviour beyond the reference values, and metrics undefined
everywhere without a numpy warning."""
import warnings

import numpy as np
import pandas as pd
import pytest

from pe_renal.evaluation import (METRICS, EvaluationError, delong_comparisons, performance_table, threshold_metrics,
                                 youden_threshold)
from pe_renal.calibration import (calibration_curve, calibration_slope_intercept, calibration_table, decision_curve,
                                  write_evaluation)


def model(n, signal, seed):
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.r_[np.ones(n // 2), np.zeros(n - n // 2)]).astype(int)
    return y, rng.normal(signal * y, 1)


def test_threshold_is_chosen_on_training_and_applied_unchanged():
    tr, te = model(200, 1.5, 0), model(100, 1.5, 1)
    res = {"m": {"train": tr, "test": te}}
    t = performance_table(res, n_boot=100)
    th = youden_threshold(*tr)
    assert (t["threshold"] == th).all()
    row = t.set_index("cohort").loc["test"]
    y, s = te
    assert row["sensitivity"] == pytest.approx(((s >= th) & (y == 1)).sum() / y.sum())
    # changing the test scores does not move the threshold
    t2 = performance_table({"m": {"train": tr, "test": (y, s + 5)}}, n_boot=0)
    assert (t2["threshold"] == th).all()


def test_metric_cis_contain_the_estimate_and_are_seeded():
    y, s = model(120, 1.0, 2)
    a = threshold_metrics(y, s, 0.5, n_boot=500, seed=7)
    b = threshold_metrics(y, s, 0.5, n_boot=500, seed=7)
    pd.testing.assert_frame_equal(a, b)
    assert ((a["lo"] <= a["value"]) & (a["value"] <= a["hi"])).all()


def test_undefined_ppv_is_nan_not_an_error():
    y, s = np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.3, 0.4])
    m = threshold_metrics(y, s, threshold=0.9, n_boot=0)["value"]
    assert np.isnan(m["ppv"]) and m["sensitivity"] == 0 and m["specificity"] == 1


def test_calibration_handles_knn_levels_and_rejects_non_probabilities():
    y, s = model(200, 1.0, 3)
    p = np.round(1 / (1 + np.exp(-s)) * 5) / 5
    cc = calibration_curve(y, p)
    assert len(cc) <= len(np.unique(p)) and cc["n"].sum() == 200
    assert ((cc["lo"] <= cc["observed"]) & (cc["observed"] <= cc["hi"])).all()
    with pytest.raises(EvaluationError, match="probabilities"):
        calibration_curve(y, s)


def test_perfectly_calibrated_model_has_slope_one():
    rng = np.random.default_rng(5)
    p = rng.uniform(0.02, 0.98, 20000)
    y = (rng.random(20000) < p).astype(int)
    slope, intercept = calibration_slope_intercept(y, p)
    assert slope == pytest.approx(1, abs=0.05) and intercept == pytest.approx(0, abs=0.05)


def test_uninformative_model_has_no_net_benefit_over_treat_all_or_none():
    y, _ = model(400, 0, 6)
    p = np.full(400, y.mean())
    d = decision_curve(y, p).pivot(index="threshold", columns="model", values="net_benefit")
    best_default = np.maximum(d["treat all"], d["treat none"])
    assert (d["model"] <= best_default + 1e-12).all()


def test_comparisons_need_the_same_patients():
    a, b = model(50, 1, 0), model(50, 1, 1)
    with pytest.raises(EvaluationError, match="same patients"):
        delong_comparisons({"a": {"test": a}, "b": {"test": b}})
    with pytest.raises(EvaluationError, match="train"):
        performance_table({"a": {"test": a}})


def knn_like(n, k, signal, seed):
    "Labels and k-NN-like vote shares j/k (exact 0 and 1 included)."
    y, s = model(n, signal, seed)
    return y, np.round(k / (1 + np.exp(-2 * s))) / k


def test_no_hypothesis_tests_on_training_predictions_and_apparent_label():
    tr, te = model(120, 1.0, 0), model(60, 1.0, 1)
    tr2, te2 = (tr[0], tr[1] + np.random.default_rng(2).normal(0, 1, 120)), (te[0], te[1] + 0.3)
    res = {"a": {"train": tr, "test": te}, "b": {"train": tr2, "test": te2}}
    d = delong_comparisons(res)
    assert set(d["cohort"]) == {"test"} and len(d) == 1
    assert len(delong_comparisons({m: {"train": r["train"]} for m, r in res.items()})) == 0
    t = performance_table(res, n_boot=0).set_index("cohort")
    assert (t.loc["train", "estimate"] == "apparent (in-sample, optimistic)").all()
    assert (t.loc["test", "estimate"] == "held-out").all()


def test_calibration_of_knn_votes_does_not_depend_on_a_clip():
    "KNN probabilities of exactly 0 or 1: Laplace smoothing (k p + 1)/(k + 2), not an arbitrary clip."
    y, p = knn_like(84, 25, 1.0, 4)
    assert ((p == 0) | (p == 1)).any()
    a = calibration_slope_intercept(y, p, eps=1e-2)
    b = calibration_slope_intercept(y, p, eps=1e-6)
    assert a == pytest.approx(b, abs=1e-12)
    # the same numbers as a logistic fit on the smoothed probabilities (statsmodels-free check with scipy)
    from scipy.optimize import minimize

    ps = (25 * p + 1) / 27
    x = np.log(ps / (1 - ps))
    nll = lambda b: np.sum(np.logaddexp(0, b[0] + b[1] * x) - y * (b[0] + b[1] * x))
    assert a[0] == pytest.approx(minimize(nll, [0, 1], method="BFGS").x[1], abs=1e-4)
    assert calibration_slope_intercept(y, p, m=25) == pytest.approx(a)   # k given or inferred: the same


def test_calibration_bins_fit_a_small_test_set():
    y, p = knn_like(84, 25, 1.0, 5)
    cc = calibration_curve(y, p)
    assert 3 <= len(cc) <= 5 and cc["n"].min() >= 12 and cc["n"].sum() == 84


def test_calibration_table_has_bootstrap_cis_and_is_written(tmp_path):
    tr, te = knn_like(195, 25, 1.0, 6), knn_like(84, 25, 1.0, 7)
    res = {"Composite": {"train": tr, "test": te}}
    t = calibration_table(res, n_boot=300, seed=1)
    r = t.iloc[0]
    assert (
        r.cohort == "test" and r.slope_lo <= r.slope <= r.slope_hi and r.intercept_lo <= r.intercept <= r.intercept_hi
    )
    assert r.smoothing == "Laplace (m*p+1)/(m+2), m=25" and r.n_boot > 250
    pd.testing.assert_frame_equal(t, calibration_table(res, n_boot=300, seed=1))            # seeded
    tabs = write_evaluation(res, tmp_path, n_boot=200)
    written = pd.read_csv(tmp_path / "tables" / "calibration.csv")
    assert list(written["model"]) == ["Composite"] and {"slope_lo", "intercept_hi", "smoothing"} <= set(written.columns)
    assert "calibration" in tabs


def test_calibration_plot_shows_the_distribution_of_predicted_risks():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from pe_renal.calibration import plot_calibration
    y, p = knn_like(84, 25, 1.0, 8)
    ax = plot_calibration({"m": {"test": (y, p)}}, "test")
    spikes = [c for c in ax.collections if c.get_gid() == "predicted-risk-distribution"]
    assert len(spikes) == 1 and len(spikes[0].get_segments()) == len(np.unique(p))
    plt.close("all")


def test_apparent_training_rows_carry_no_interval_anywhere(tmp_path):
    """Training rows are in-sample point values: no AUC CI, no bootstrap CIs, no CI in the paper-format table or the
    ROC legend."""
    from pe_renal.evaluation import format_performance, performance_table, plot_roc
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(40), np.ones(40)].astype(int)
    s = y + rng.normal(0, 1, 80)
    res = {"m": {"train": (y, s), "test": (y[::2], s[::2] + rng.normal(0, 1, 40))}}
    t = performance_table(res, n_boot=200, seed=0).set_index("cohort")
    lo_hi = [c for c in t.columns if c.endswith(("_lo", "_hi"))]
    assert len(lo_hi) >= 14 and t.loc["train", lo_hi].isna().all() and t.loc["test", lo_hi].notna().all()
    f = format_performance(t.reset_index()).set_index("cohort")
    assert "(" not in f.loc["train", "AUC (95% CI)"] and "(" in f.loc["test", "AUC (95% CI)"]
    assert "(" not in f.loc["train", "Sensitivity"] and "(" in f.loc["test", "Sensitivity"]
    ax = plot_roc(res, "train")
    assert "no CI" in ax.get_legend().get_title().get_text() and "(" not in ax.get_legend().get_texts()[0].get_text()
    assert "apparent" in ax.get_title()


def test_calibration_ci_counts_separated_resamples_and_leaves_their_limit_unbounded():
    """A resample whose classes the score separates has no finite calibration slope: its likelihood heads to +inf. Such
    resamples are counted (n_separated) and enter the percentile interval as +inf, so the upper limit is unbounded once
    they are more than alpha/2 of them, instead of being dropped (which gave a finite, too narrow interval)."""
    from pe_renal.calibration import calibration_table
    rng = np.random.default_rng(3)
    # small and strongly informative: many resamples are separated
    y = np.r_[np.zeros(8), np.ones(8)].astype(int)
    p = np.clip(np.where(y == 1, 0.75, 0.25) + rng.normal(0, 0.2, 16), 0.02, 0.98)
    t = calibration_table({"m": {"test": (y, p)}}, n_boot=1000, seed=0).iloc[0]
    assert t["n_boot"] == 1000 and 50 < t["n_separated"] < 1000, t["n_separated"]
    assert t["slope_hi"] == np.inf and np.isfinite(t["slope_lo"]) and t["slope_lo"] > 0, t
    # large and weakly informative: no resample is separated, the interval is finite and unchanged by the rule
    y2 = rng.integers(0, 2, 400)
    p2 = np.clip(0.5 + 0.2 * (y2 - 0.5) + rng.normal(0, 0.15, 400), 0.01, 0.99)
    t2 = calibration_table({"m": {"test": (y2, p2)}}, n_boot=300, seed=0).iloc[0]
    assert (
        t2["n_separated"] == 0
        and np.isfinite([t2["slope_lo"], t2["slope_hi"]]).all()
        and t2["slope_lo"] < t2["slope"] < t2["slope_hi"]
    )
    # an inverted score: separated resamples head to -inf, the lower limit is the unbounded one
    t3 = calibration_table({"m": {"test": (y, 1 - p)}}, n_boot=1000, seed=0).iloc[0]
    assert t3["slope_lo"] == -np.inf and np.isfinite(t3["slope_hi"]) and t3["slope_hi"] < 0, t3


def test_delong_skips_identical_models_and_adjusts_for_multiplicity():
    """Composite = Clinical (no deep feature kept): no test, a note; Holm's adjustment over the cohort's tests, checked
    by hand."""
    from pe_renal.evaluation import holm
    tr, te = model(120, 1.0, 0), model(80, 1.0, 1)
    rng = np.random.default_rng(5)
    te_b = (te[0], te[1] + rng.normal(0, 1, 80))
    te_c = (te[0], te[1] + rng.normal(0, 2, 80))
    res = {
        "DL": {"train": tr, "test": te_b},
        "Clinical": {"train": tr, "test": te_c},
        "Composite": {"train": tr, "test": te_c},
    }
    d = delong_comparisons(res).set_index(["model_a", "model_b"])
    same = d.loc[("Clinical", "Composite")]
    assert (
        np.isnan(same["p"])
        and np.isnan(same["z"])
        and "identical predictions" in same["note"]
        and same["difference"] == 0
    )
    assert d["p_holm"].notna().sum() == 2                                    # two real tests in the family, not three
    p = d["p"].dropna().to_numpy()
    lo, hi = np.sort(p)
    np.testing.assert_allclose(np.sort(d["p_holm"].dropna()), [min(1, 2 * lo), min(1, max(2 * lo, hi))])
    np.testing.assert_allclose(
        holm(np.array([0.01, 0.04, np.nan, 0.03])), [0.03, 0.06, np.nan, 0.06]
    )  # by hand: 3p, 2p, max(., p)


def test_every_row_of_the_performance_table_holds_its_own_cohorts_numbers():
    """Cohorts of different sizes, signals and prevalences: each row's n, AUC, sensitivity and specificity are its own
    cohort's."""
    from sklearn.metrics import roc_auc_score
    rng = np.random.default_rng(4)
    parts = {"train": (120, 40, 1.5), "test": (57, 31, 0.4)}            # patients, positives, signal: nothing in common
    res = {"m": {}}
    for part, (n, pos, signal) in parts.items():
        y = rng.permutation(np.r_[np.ones(pos), np.zeros(n - pos)]).astype(int)
        res["m"][part] = (y, rng.normal(signal * y, 1))
    t = performance_table(res, n_boot=0).set_index("cohort")
    th = youden_threshold(*res["m"]["train"])
    for part, (y, s) in res["m"].items():
        r = t.loc[part]
        assert (r["n"], r["n_positive"]) == (len(y), y.sum()), part
        assert r["auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12), part
        assert r["sensitivity"] == pytest.approx((s[y == 1] >= th).mean(), abs=1e-12), part
        assert r["specificity"] == pytest.approx((s[y == 0] < th).mean(), abs=1e-12), part
    assert abs(t.loc["train", "auc"] - t.loc["test", "auc"]) > 0.1      # the rows could not pass for each other


def null_sweep(seed:int, n_train:int=105, n_test:int=45, k:int=15)->tuple:
    """A no-signal cohort as the study's KNN sees it: labels at ~50% prevalence, coarse vote-share scores (j/k)
    unrelated to
    them; the threshold is Youden's on the training part, applied to the test part."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.r_[np.ones((n_train + n_test) // 2), np.zeros((n_train + n_test + 1) // 2)]).astype(int)
    s = rng.binomial(k, 0.5, n_train + n_test) / k
    th = youden_threshold(y[:n_train], s[:n_train])
    return y[n_train:], s[n_train:], th


@pytest.mark.parametrize("seed", range(15))
def test_no_threshold_metric_interval_has_zero_width_under_the_null(seed):
    """15 frozen null cohorts, each at its Youden threshold and at thresholds that call everyone or no one positive (the
    0 of n and n of n cases a bootstrap turned into 1.000 (1.000-1.000)): no row has lo == hi; a row without an interval
    says why; every interval holds its estimate."""
    y, s, th = null_sweep(seed)
    for thr in (th, s.min(), s.max() + 1):
        t = threshold_metrics(y, s, thr, n_boot=500, seed=seed)
        ok = t["lo"].notna() & t["hi"].notna()
        assert not (t["lo"] == t["hi"]).any(), t
        assert (t.loc[ok, "lo"] < t.loc[ok, "hi"]).all() and (t.loc[~ok, "note"] != "").all(), t
        assert ((t.loc[ok, "lo"] <= t.loc[ok, "value"]) & (t.loc[ok, "value"] <= t.loc[ok, "hi"])).all(), t
    res = {"m": {"train": (y, s), "test": (y, s)}}
    perf = performance_table(res, n_boot=200, seed=seed).set_index("cohort").loc["test"]
    for k in METRICS:
        assert (
            perf[f"{k}_lo"] != perf[f"{k}_hi"] or "no interval" in perf["ci_note"] or "undefined" in perf["ci_note"]
        ), k


def test_performance_table_on_the_null_sweep_has_no_zero_width_rows():
    """The whole table over the 15 null cohorts, as the study writes it: every held-out threshold-metric row has lo <
    hi or NA with a note."""
    rows = 0
    for seed in range(15):
        y, s, th = null_sweep(seed)
        perf = performance_table({"m": {"train": (y, s), "test": (y, s)}}, n_boot=200, seed=seed, thresholds={"m": th})
        r = perf.set_index("cohort").loc["test"]
        for k in METRICS:
            lo, hi = r[f"{k}_lo"], r[f"{k}_hi"]
            if np.isfinite(lo) and np.isfinite(hi):
                assert lo < hi, (seed, k, lo, hi)
                rows += 1
            else:
                assert k in r["ci_note"], (seed, k)
    assert rows >= 15 * 5  # the proportions always have an interval here


def test_formatted_table_says_why_a_metric_has_no_interval():
    """Nobody called positive: PPV is undefined and F1 (0, no true positive) has no interval; the table says both,
    never a bare value."""
    from pe_renal.evaluation import format_performance, wilson_ci
    y = np.r_[np.ones(24), np.zeros(21)].astype(int)
    res = {"m": {"train": (y, np.linspace(0, 1, 45)), "test": (y, np.zeros(45))}}
    perf = performance_table(res, n_boot=200, thresholds={"m": 0.5})
    f = format_performance(perf).set_index("cohort").loc["test"]
    assert f["PPV"] == "undefined" and f["F1"] == "0.000 (no CI)"
    assert (
        "ppv: undefined: no patient called positive" in f["Note"] and "f1: no interval: no true positive" in f["Note"]
    )
    lo, hi = wilson_ci(0, 24)
    assert f["Sensitivity"] == f"0.000 ({lo:.3f}-{hi:.3f})" and hi > 0.1


def test_identical_models_are_reported_as_one_model():
    """Composite = Clinical (the same scores): one threshold and one internal-validation estimate, the earlier
    model's, and the
    row names the model it is; models with other scores (a negative control) keep their own."""
    from pe_renal.evaluation import format_performance
    y, s = model(100, 1.0, 4)
    iv = {
        "Clinical": dict(auc=0.6, lo=0.5, hi=0.7, method="cv"),
        "Composite": dict(auc=0.7, lo=0.6, hi=0.8, method="cv"),
    }
    res = {"Clinical": {"train": (y, s), "test": (y, s)}, "Composite": {"train": (y, s.copy()), "test": (y, s.copy())}}
    perf = performance_table(res, n_boot=100, thresholds={"Clinical": 0.3, "Composite": 0.9}, internal=iv)
    c = perf.set_index(["model", "cohort"])
    assert (c.loc["Composite", "threshold"] == 0.3).all() and c.loc[("Composite", "train"), "iv_auc"] == 0.6
    assert list(perf["same_as"]) == ["", "", "Clinical", "Clinical"]
    assert c.loc[("Composite", "test"), "sensitivity"] == c.loc[("Clinical", "test"), "sensitivity"]
    f = format_performance(perf)
    assert f["model"].tolist()[2:] == ["Composite (= Clinical: identical predictions, the same model)"] * 2
    res["Composite"] = {"train": (y, s + 0.1), "test": (y, s + 0.1)}  # other scores: its own numbers
    perf = performance_table(res, n_boot=100, thresholds={"Clinical": 0.3, "Composite": 0.9}, internal=iv).set_index(
        ["model", "cohort"]
    )
    assert (perf.loc["Composite", "threshold"] == 0.9).all() and perf.loc[("Composite", "train"), "iv_auc"] == 0.7
    assert (perf["same_as"] == "").all()


def test_calibration_intercept_counts_one_class_resamples_and_separation_is_said_in_words(tmp_path):
    """Five patients: many resamples hold one class, where the intercept heads to +-infinity; they are counted and
    kept as
    an unbounded limit (as separated resamples are for the slope), not dropped. A test set the score separates has no
    finite slope: the table says why, and the report shows words, never inf (inf-inf)."""
    from pe_renal.report import _INFINITE, html_table
    y, p = np.array([0, 0, 0, 1, 1]), np.array([0.2, 0.3, 0.6, 0.5, 0.8])
    r = calibration_table({"m": {"test": (y, p)}}, n_boot=500, seed=0).iloc[0]
    one_class = sum(len(set(y[i])) == 1 for i in np.random.default_rng(0).integers(0, 5, (500, 5)))
    assert r.n_intercept_infinite == one_class > 12                     # more than 2.5% of 500: the limit is unbounded
    assert r.intercept_lo == -np.inf or r.intercept_hi == np.inf
    y, p = np.r_[np.zeros(10), np.ones(10)].astype(int), np.r_[np.full(10, 0.1), np.full(10, 0.9)]
    t = calibration_table({"m": {"test": (y, p)}}, n_boot=200, seed=0)
    assert (
        t.loc[0, "slope"] == np.inf
        and t.loc[0, "n_separated"] == 200
        and "not estimable (separated)" in t.loc[0, "note"]
    )
    (tmp_path / "tables").mkdir()
    t.to_csv(tmp_path / "tables" / "calibration.csv", index=False)
    html = str(html_table(tmp_path, "calibration", infinite=_INFINITE))
    assert "not estimable (separated)" in html and "unbounded above" in html and ">inf<" not in html


def test_models_tied_in_auc_with_different_scores_are_tested_and_kept_in_holms_family():
    """Equal AUCs are not identical predictions: two models that rank the patients differently but happen to reach the
    same AUC get a DeLong test (z = 0, p = 1) and count in Holm's family; only identical scores are left untested."""
    from pe_renal.evaluation import delong_comparisons, delong_test, holm, roc_auc
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    a = np.array([.1, .2, .3, .6, .4, .7, .8, .9])             # one control above one case
    b = np.array([.1, .2, .5, .3, .4, .6, .7, .8])             # another pair swapped: the same AUC, other scores
    c = np.array([.3, .1, .2, .4, .5, .6, .9, .7])             # a third model, perfectly ranking
    assert roc_auc(y, a) == roc_auc(y, b) == 15 / 16 and not np.array_equal(a, b)
    res = {"A": {"test": (y, a)}, "B": {"test": (y, b)}, "C": {"test": (y, c)}, "A2": {"test": (y, a.copy())}}
    d = delong_comparisons(res).set_index(["model_a", "model_b"])
    ab = d.loc[("A", "B")]
    assert ab["note"] == "" and ab["z"] == pytest.approx(0) and ab["p"] == pytest.approx(1)
    assert ab["p"] == pytest.approx(delong_test(y, a, b).p)
    assert np.isnan(d.loc[("A", "A2"), "p"]) and "identical" in d.loc[("A", "A2"), "note"]
    tested = d["p"].notna()
    assert tested.sum() == 5                                     # every pair but the identical one
    np.testing.assert_allclose(d.loc[tested, "p_holm"], holm(d.loc[tested, "p"].to_numpy()))
    m = tested.sum()                                              # Holm by hand: the smallest p times the family's size
    assert d.loc[tested, "p_holm"].min() == pytest.approx(min(1, m * d.loc[tested, "p"].min()))


# ---- threshold metrics that are undefined ----------------------------------------------------------------------------

def test_threshold_metrics_undefined_everywhere_raise_no_numpy_warning():
    from pe_renal.evaluation import threshold_metrics

    y = np.array([0, 1] * 10)
    s = np.linspace(0, 0.5, 20)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        out = threshold_metrics(y, s, threshold=0.9, n_boot=50)
    assert np.isnan(out.loc["ppv", "value"]) if "ppv" in out.index else True


def test_youden_threshold_is_the_best_cut_of_sklearns_roc_curve():
    """The Youden threshold reaches the largest sensitivity + specificity - 1 over every cut of scikit-learn's
    `roc_curve` (positive if score >= threshold), and where one cut is best it is that cut's score exactly: the
    threshold is not the neighbouring candidate of the best one."""
    from sklearn.metrics import roc_curve
    for seed in range(5):
        y, s = model(60, 1.0, seed)
        fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
        j = tpr - fpr
        th = youden_threshold(y, s)
        assert ((s >= th) & (y == 1)).mean() / y.mean() - ((s >= th) & (y == 0)).mean() / (1 - y.mean()) == \
            pytest.approx(j.max(), abs=1e-12)
        if np.isclose(j, j.max(), rtol=0, atol=1e-12).sum() == 1:
            assert th == thr[np.argmax(j)]


def test_calibration_table_brier_is_of_the_risks_as_predicted_not_the_smoothed_ones():
    """The Brier score of the calibration table is scikit-learn's `brier_score_loss` of the vote shares as the model
    gives them (0 and 1 included); the Laplace smoothing serves the logit of the slope and intercept only, and would
    move the Brier score (checked: it differs here)."""
    from sklearn.metrics import brier_score_loss
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 120)
    p = np.clip(np.round(5 * (0.5 * y + rng.uniform(-0.3, 0.7, 120))) / 5, 0, 1)   # shares of k = 5 votes
    assert ((p == 0) | (p == 1)).any()
    row = calibration_table({"m": {"test": (y, p)}}, n_boot=0).iloc[0]
    assert row["brier"] == pytest.approx(brier_score_loss(y, p), abs=1e-12)
    assert "m=5" in row["smoothing"] and brier_score_loss(y, (5 * p + 1) / 7) != pytest.approx(row["brier"])


def test_reliability_curve_bins_are_blocks_of_sorted_risks_with_wilson_95_intervals():
    """The reliability curve on 100 continuous risks: 5 quantile bins (about 20 patients each), each a block of the
    sorted risks whose mean is the bin's predicted value and whose event share is its observed value, with the 95%
    Wilson interval of statsmodels' `proportion_confint`."""
    from statsmodels.stats.proportion import proportion_confint
    rng = np.random.default_rng(8)
    p = rng.uniform(0.05, 0.95, 100)
    y = (rng.random(100) < p).astype(int)
    cc = calibration_curve(y, p)
    assert len(cc) == 5 and cc["n"].sum() == 100 and cc["n"].between(19, 21).all()
    o = np.argsort(p)
    for (_, r), block in zip(cc.iterrows(), np.split(o, np.cumsum(cc["n"])[:-1])):
        k = y[block].sum()
        assert r["predicted"] == pytest.approx(p[block].mean()) and r["observed"] == pytest.approx(k / r["n"])
        assert [r["lo"], r["hi"]] == pytest.approx(proportion_confint(k, r["n"], alpha=0.05, method="wilson"))


def test_holm_family_is_each_held_out_cohorts_comparisons():
    """Holm's adjustment runs within each held-out cohort, never across cohorts: with three models scored on a test
    and an external cohort, each cohort's three adjusted p-values are statsmodels' Holm of that cohort's three raw
    p-values (a family of six would adjust them more)."""
    from statsmodels.stats.multitest import multipletests
    rng = np.random.default_rng(6)
    tr, te, ex = model(100, 1.0, 0), model(90, 1.0, 1), model(70, 1.0, 2)
    res = {name: {"train": tr, "test": (te[0], te[1] + rng.normal(0, sd, 90)),
                  "external": (ex[0], ex[1] + rng.normal(0, sd, 70))}
           for name, sd in (("A", 0.3), ("B", 1.5), ("C", 3))}
    d = delong_comparisons(res)
    assert sorted(d["cohort"].value_counts().items()) == [("external", 3), ("test", 3)]
    for _, g in d.groupby("cohort"):
        np.testing.assert_allclose(g["p_holm"], multipletests(g["p"], method="holm")[1], rtol=1e-12)
    assert not np.allclose(d["p_holm"], multipletests(d["p"], method="holm")[1])
