"""Confidence intervals checked against known answers, with a margin: an interval of the right width passes, one half
or twice as wide fails.

- DeLong's variance of the AUC, worked out by hand on seven patients (fractions);
- the coverage of DeLong's 95% interval over 1000 simulated samples, with bounds that a correct interval meets with
  probability >= 99.9% and one half or twice as wide does not (binomial arithmetic in the test);
- the Wilson score intervals of the threshold metrics (statsmodels' proportion_confint; 24/24 -> 0.862-1.000, 0/21 ->
  0-0.155), and F1's unstratified bootstrap against the quantiles of a multinomial draw of the counts;
- the bootstrap intervals of the calibration slope and intercept against the likelihood (Wald) intervals of statsmodels
  on a large, correctly specified cohort, where the two agree.

The CI of the internal validation (pe_renal.internal.internal_validation / repeated_cv) is checked in
tests/test_internal_validation.py and tests/test_models.py."""
from fractions import Fraction as F

import numpy as np
import pytest
from scipy import stats

from pe_renal.evaluation import WILSON, delong_ci, threshold_metrics, wilson_ci
from pe_renal.calibration import calibration_table


def sample_variance(v):
    m = sum(v) / len(v)
    return sum((x - m) ** 2 for x in v) / (len(v) - 1)


def test_delong_variance_equals_the_hand_computed_one():
    """Positives 0.9, 0.7, 0.4; negatives 0.8, 0.4, 0.3, 0.1 (one tie, counted 1/2).
    Placements V10 (share of negatives below each positive): 1, 3/4, 5/8; V01 (share of positives above each
    negative): 1/3, 5/6, 1, 1. AUC = 19/24; var = s^2(V10)/3 + s^2(V01)/4 = (7/192)/3 + (43/432)/4 = 1/27."""
    y = [1, 1, 1, 0, 0, 0, 0]
    s = [0.9, 0.7, 0.4, 0.8, 0.4, 0.3, 0.1]
    v10, v01 = [F(1), F(3, 4), F(5, 8)], [F(1, 3), F(5, 6), F(1), F(1)]
    auc = F(19, 24)
    assert sum(v10) / 3 == auc == sum(v01) / 4
    assert (sample_variance(v10), sample_variance(v01)) == (F(7, 192), F(43, 432))
    var = sample_variance(v10) / 3 + sample_variance(v01) / 4
    assert var == F(1, 27)
    for alpha in (0.05, 0.5):                               # 95%: the upper limit is clipped at 1; 50%: neither is
        half = stats.norm.ppf(1 - alpha / 2) * float(var) ** 0.5
        a = delong_ci(y, s, alpha=alpha)
        assert (a.auc, a.lo, a.hi) == pytest.approx(
            (float(auc), float(auc) - half, min(1.0, float(auc) + half)), abs=1e-12
        )


# Coverage of DeLong's 95% interval: binormal scores (negatives N(0, 1), positives N(d, 1), AUC = Phi(d / sqrt 2) =
# 0.75),
# 60 + 60 patients. Its true coverage there is 0.945 (0.9449 +- 0.0016 in 20,000 simulated samples; DeLong is a
# little liberal at this size), so with R = 1000 samples the count of intervals covering 0.75 is Binomial(1000, c):
#   correct interval, c in [0.94, 0.95]:  P(count < 915) + P(count > 975) <= 0.00064   -> passes with >= 99.9%
#   half as wide, c = 2 Phi(0.98) - 1 = 0.67 (0.675 simulated):  P(count >= 915) < 1e-60
#   twice as wide, c = 2 Phi(3.92) - 1 > 0.9999 (0.999 simulated):  P(count <= 975) < 1e-15
# (the test recomputes these tails, so the comment cannot drift from the bounds).
R, LOWER, UPPER = 1000, 915, 975


def test_delong_coverage_with_a_margin():
    assert stats.binom.cdf(LOWER - 1, R, 0.94) + stats.binom.sf(UPPER, R, 0.94) < 1e-3
    assert stats.binom.cdf(LOWER - 1, R, 0.95) + stats.binom.sf(UPPER, R, 0.95) < 1e-3
    assert stats.binom.sf(LOWER - 1, R, 0.70) < 1e-6 and stats.binom.cdf(UPPER, R, 0.996) < 1e-6
    auc = 0.75
    d = np.sqrt(2) * stats.norm.ppf(auc)
    rng = np.random.default_rng(2024)
    y = np.r_[np.ones(60), np.zeros(60)].astype(int)
    covered = {1.0: 0, 0.5: 0, 2.0: 0}                      # the interval, and intervals of half and twice its width
    for _ in range(R):
        a = delong_ci(y, np.r_[rng.normal(d, 1, 60), rng.normal(0, 1, 60)])
        centre, half = (a.lo + a.hi) / 2, (a.hi - a.lo) / 2
        for f in covered:
            covered[f] += centre - f * half < auc < centre + f * half
    assert LOWER <= covered[1.0] <= UPPER, covered
    assert covered[0.5] < LOWER and covered[2.0] > UPPER, covered   # the bounds tell the wrong widths apart


def test_threshold_metric_proportions_have_wilson_intervals():
    """Each proportion at a fixed threshold gets the Wilson score interval of its k of n, checked against statsmodels'
    proportion_confint (and the hand values 24/24 -> 0.862-1.000, 0/21 -> 0-0.155); an interval of half or twice the
    width
    differs from it by far more than the tolerance."""
    sm = pytest.importorskip("statsmodels.stats.proportion")
    n1, n0, tp, tn = 40, 60, 31, 12
    y = np.r_[np.ones(n1), np.zeros(n0)].astype(int)
    s = np.r_[np.ones(tp), np.zeros(n1 - tp), np.zeros(tn), np.ones(n0 - tn)]   # predicted positive: score 1 >= 0.5
    t = threshold_metrics(y, s, 0.5, n_boot=200, seed=0)
    fp, fn = n0 - tn, n1 - tp
    counts = dict(
        sensitivity=(tp, n1), specificity=(tn, n0), accuracy=(tp + tn, n1 + n0), ppv=(tp, tp + fp), npv=(tn, tn + fn)
    )
    for k, (num, den) in counts.items():
        lo, hi = sm.proportion_confint(num, den, alpha=0.05, method="wilson")
        assert (t.loc[k, "k"], t.loc[k, "n"]) == (num, den) and t.loc[k, "value"] == pytest.approx(num / den)
        assert (t.loc[k, "lo"], t.loc[k, "hi"]) == pytest.approx((lo, hi), abs=1e-10), k
        assert t.loc[k, "ci"] == WILSON and t.loc[k, "note"] == ""
        assert abs((t.loc[k, "hi"] - t.loc[k, "lo"]) - (hi - lo) / 2) > 0.01      # half as wide would be told apart
    assert wilson_ci(24, 24) == pytest.approx((0.862, 1.0), abs=5e-4)
    assert wilson_ci(0, 21) == pytest.approx((0.0, 0.155), abs=5e-4)
    assert wilson_ci(24, 24)[0] < 1 and wilson_ci(0, 21)[1] > 0                  # never zero width at 0 or n
    assert np.isnan(wilson_ci(0, 0)).all()


def test_f1_interval_is_the_unstratified_bootstrap():
    """F1's percentile bootstrap resamples patients without stratifying, so the resampled counts (TP, FP, FN, TN)
    are one
    multinomial draw of N patients: its quantiles, from 200,000 multinomial draws (an independent construction),
    match the
    interval within the Monte Carlo error of B = 20,000 resamples. A stratified bootstrap (class sizes fixed) gives a
    narrower interval here, which the test tells apart."""
    n1, n0, tp, tn = 30, 70, 18, 50
    y = np.r_[np.ones(n1), np.zeros(n0)].astype(int)
    s = np.r_[np.ones(tp), np.zeros(n1 - tp), np.zeros(tn), np.ones(n0 - tn)]
    t = threshold_metrics(y, s, 0.5, n_boot=20_000, seed=1)
    p = np.array([tp, n0 - tn, n1 - tp, tn]) / (n1 + n0)
    TP, FP, FN, _ = np.random.default_rng(2).multinomial(n1 + n0, p, size=200_000).T
    f1 = 2 * TP / (2 * TP + FP + FN)
    lo, hi = np.quantile(f1, [0.025, 0.975])
    assert (t.loc["f1", "lo"], t.loc["f1", "hi"]) == pytest.approx((lo, hi), abs=0.006)
    TPs, TNs = (
        np.random.default_rng(3).binomial(n1, tp / n1, 200_000),
        np.random.default_rng(4).binomial(n0, tn / n0, 200_000),
    )
    f1s = 2 * TPs / (2 * TPs + (n0 - TNs) + (n1 - TPs))
    slo, shi = np.quantile(f1s, [0.025, 0.975])
    assert (hi - lo) - (shi - slo) > 0.02  # the stratified one is narrower by more than the error
    assert t.loc["f1", "ci"].startswith("percentile bootstrap, patients resampled without stratification")



def test_calibration_bootstrap_cis_match_the_likelihood_intervals():
    """1000 patients with perfectly calibrated continuous risks: the model y ~ 1 + logit p is correctly specified,
    so the
    percentile bootstrap interval of the slope (and of the intercept, offset logit p) and the Wald interval of
    statsmodels'
    fit estimate the same thing. With 1000 resamples each limit has a Monte Carlo error of ~2% of the width; the widths
    agree within 15% (measured: within 5% for six seeds), and an interval half or twice as wide is far outside that."""
    sm = pytest.importorskip("statsmodels.api")
    rng = np.random.default_rng(11)
    p = rng.uniform(0.05, 0.95, 1000)
    y = (rng.uniform(size=1000) < p).astype(int)
    r = calibration_table({"m": {"test": (y, p)}}, n_boot=1000, seed=3).iloc[0]
    assert r.smoothing == "none" and r.n_separated == 0
    x = np.log(p / (1 - p))
    wald_slope = sm.GLM(y, sm.add_constant(x), family=sm.families.Binomial()).fit(tol=1e-12).conf_int()[1]
    wald_icpt = sm.GLM(y, np.ones((len(y), 1)), family=sm.families.Binomial(), offset=x).fit(tol=1e-12).conf_int()[0]
    for (lo, hi, est), (wlo, whi) in (((r.slope_lo, r.slope_hi, r.slope), wald_slope),
                                      ((r.intercept_lo, r.intercept_hi, r.intercept), wald_icpt)):
        width = whi - wlo
        assert 0.85 < (hi - lo) / width < 1.15, (lo, hi, wlo, whi)
        assert abs((lo + hi) / 2 - est) < 0.1 * width, (lo, hi, est)
