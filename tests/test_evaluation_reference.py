"""Known answers for calibration (against statsmodels' maximum-likelihood fits) and decision curves (hand-counted)."""
from fractions import Fraction as F

import numpy as np
import pytest

from pe_renal.calibration import calibration_slope_intercept, calibration_table, decision_curve, plot_decision_curve

sm = pytest.importorskip("statsmodels.api")


def logit(p): return np.log(p / (1 - p))
def expit(x): return 1 / (1 + np.exp(-x))


def cohort(n=2000, seed=0):
    "True risks p ~ U(0.05, 0.95) and outcomes y ~ Bernoulli(p): p is perfectly calibrated for y."
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.05, 0.95, n)
    return (rng.uniform(size=n) < p).astype(int), p


def statsmodels_fits(y, p):
    "Slope fit (y ~ 1 + logit p) and intercept fit (y ~ 1, offset logit p), by statsmodels' GLM."
    x = logit(p)
    slope = sm.GLM(y, sm.add_constant(x), family=sm.families.Binomial()).fit(tol=1e-12)
    icpt = sm.GLM(y, np.ones((len(y), 1)), family=sm.families.Binomial(), offset=x).fit(tol=1e-12)
    return slope, icpt


def check_equals_statsmodels(y, p):
    slope, icpt = calibration_slope_intercept(y, p)
    ref_s, ref_i = statsmodels_fits(y, p)
    assert slope == pytest.approx(ref_s.params[1], abs=1e-6)
    assert icpt == pytest.approx(ref_i.params[0], abs=1e-6)
    return slope, icpt, ref_s, ref_i


def test_calibrated_risks_have_slope_one_and_intercept_zero():
    "Perfectly calibrated risks: slope = statsmodels (CI covers 1, ~1.0), intercept = statsmodels (CI covers 0)."
    y, p = cohort(seed=1)
    slope, icpt, ref_s, ref_i = check_equals_statsmodels(y, p)
    lo, hi = ref_s.conf_int()[1]
    assert lo < 1 < hi and abs(slope - 1) < 0.15       # fitted on y flipped, this would be about -1
    lo, hi = ref_i.conf_int()[0]
    assert lo < 0 < hi and abs(icpt) < 0.15


def test_overconfident_risks_have_slope_one_half():
    "Logits doubled (over-confident): slope = statsmodels, about 0.5."
    y, p = cohort(seed=2)
    slope, _, _, _ = check_equals_statsmodels(y, expit(2 * logit(p)))
    assert 0.4 < slope < 0.6


def test_inverted_risks_have_slope_minus_one():
    "Risks inverted (1 - p): slope = statsmodels, negative, about -1."
    y, p = cohort(seed=3)
    slope, _, _, _ = check_equals_statsmodels(y, 1 - p)
    assert -1.15 < slope < -0.85


def test_underestimated_risks_have_positive_intercept():
    "Logits lowered by 1 (risk underestimated): intercept = statsmodels, about +1 (observed > predicted), slope ~1."
    y, p = cohort(seed=4)
    slope, icpt, _, _ = check_equals_statsmodels(y, expit(logit(p) - 1))
    assert 0.85 < icpt < 1.15 and abs(slope - 1) < 0.15


def test_vote_shares_are_fitted_on_their_laplace_smoothed_logits():
    "KNN vote shares (k=10, 0 and 1 included): fits equal statsmodels on logit((10p+1)/12)."
    y, p = cohort(500, seed=5)
    votes = np.random.default_rng(6).binomial(10, p) / 10
    assert ((votes == 0) | (votes == 1)).any()
    ref_s, ref_i = statsmodels_fits(y, (10 * votes + 1) / 12)
    assert calibration_slope_intercept(y, votes) == pytest.approx((ref_s.params[1], ref_i.params[0]), abs=1e-6)


def test_calibration_table_point_estimates_equal_statsmodels_on_the_held_out_cohort():
    "calibration_table's test-cohort slope and intercept = statsmodels on that cohort (not on training)."
    tr, te = cohort(600, seed=7), cohort(400, seed=8)
    te = (te[0], expit(1.5 * logit(te[1]) + 0.3))                     # miscalibrated held-out predictions
    row = calibration_table({"m": {"train": tr, "test": te}}, n_boot=200, seed=0).iloc[0]
    ref_s, ref_i = statsmodels_fits(*te)
    assert row["cohort"] == "test" and row["smoothing"] == "none"
    assert row["slope"] == pytest.approx(ref_s.params[1], abs=1e-6)
    assert row["intercept"] == pytest.approx(ref_i.params[0], abs=1e-6)
    assert (
        row["slope_lo"] < row["slope"] < row["slope_hi"]
        and row["intercept_lo"] < row["intercept"] < row["intercept_hi"]
    )


# 10 patients, 3 with preeclampsia (prevalence 3/10). No risk equals a tested threshold.
Y = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 0])
P = np.array([0.85, 0.60, 0.15, 0.80, 0.55, 0.30, 0.25, 0.12, 0.05, 0.02])
# threshold pt: (TP, FP) among those with P >= pt
COUNTS = {F(1, 10): (3, 5),   # positives 0.85 0.60 0.15; negatives 0.80 0.55 0.30 0.25 0.12
          F(2, 10): (2, 4),   # positives 0.85 0.60;      negatives 0.80 0.55 0.30 0.25
          F(5, 10): (2, 2),   # positives 0.85 0.60;      negatives 0.80 0.55
          F(3, 4):  (1, 1)}   # positive  0.85;           negative  0.80


def hand_net_benefit(pt):
    tp, fp = COUNTS[pt]
    return F(tp, 10) - F(fp, 10) * pt / (1 - pt)


def hand_treat_all(pt):
    prev = F(3, 10)
    return prev - (1 - prev) * pt / (1 - pt)


def test_decision_curve_equals_hand_counts():
    "Model, treat-all and treat-none net benefit at pt = 0.1, 0.2, 0.5, 0.75 equal the hand-counted fractions."
    pts = list(COUNTS)
    d = decision_curve(Y, P, [float(t) for t in pts], name="m").pivot(
        index="threshold", columns="model", values="net_benefit"
    )
    expected_model = [hand_net_benefit(t) for t in pts]
    expected_all = [hand_treat_all(t) for t in pts]
    # the fractions written out: 3/10 - 5/90, 2/10 - 4/40, 0, 1/10 - 3/10; treat all 3/10 - 7/90, 3/10 - 7/40, -4/10,
    # -18/10
    assert expected_model == [F(22, 90), F(1, 10), 0, F(-2, 10)]
    assert expected_all == [F(20, 90), F(5, 40), F(-4, 10), F(-18, 10)]
    np.testing.assert_allclose(d["m"].to_numpy(), [float(v) for v in expected_model], atol=1e-12)
    np.testing.assert_allclose(d["treat all"].to_numpy(), [float(v) for v in expected_all], atol=1e-12)
    np.testing.assert_array_equal(d["treat none"].to_numpy(), 0.0)
    # false positives weighted by pt alone would give 0.3 - 0.35 and 0.2 - 0.1 at pt = 0.5
    assert d.loc[0.5, "treat all"] == pytest.approx(-0.4) and d.loc[0.5, "m"] == pytest.approx(0.0, abs=1e-12)


def test_treat_all_equals_prevalence_formula_on_a_fine_grid():
    "Treat-all = prevalence - (1 - prevalence) pt/(1 - pt) at every default threshold; treat-none = 0."
    d = decision_curve(Y, P).pivot(index="threshold", columns="model", values="net_benefit")
    t = d.index.to_numpy()
    np.testing.assert_allclose(d["treat all"], 0.3 - 0.7 * t / (1 - t), atol=1e-12)
    assert (d["treat none"] == 0).all() and len(t) == 99


def test_plot_decision_curve_draws_the_hand_counted_values():
    "The plotted model and treat-all lines pass through the hand-counted net benefits; treat-none is the zero line."
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ax = plot_decision_curve({"m": {"test": (Y, P)}}, "test")
    lines = {l.get_label(): l for l in ax.get_lines()}
    for pt in COUNTS:
        for label, expected in (("m", hand_net_benefit(pt)), ("treat all", hand_treat_all(pt))):
            x, yv = lines[label].get_data()
            i = int(np.argmin(np.abs(np.asarray(x) - float(pt))))
            assert x[i] == pytest.approx(float(pt)) and yv[i] == pytest.approx(float(expected), abs=1e-12)
    assert set(lines["treat none"].get_ydata()) == {0}
    plt.close("all")
