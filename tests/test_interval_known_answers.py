"""Confidence intervals checked against known answers, with a margin: an interval of the right width passes, one half
or twice as wide fails.

- DeLong's variance of the AUC, worked out by hand on seven patients (fractions);
- the coverage of DeLong's 95% interval over 1000 simulated samples, with bounds that a correct interval meets with
  probability >= 99.9% and one half or twice as wide does not (binomial arithmetic in the test);
- the stratified bootstrap intervals of the threshold metrics: at a fixed threshold the resampled counts are two
  independent binomials, so each interval's limits are known quantiles of an exactly computable distribution;
- the bootstrap intervals of the calibration slope and intercept against the likelihood (Wald) intervals of statsmodels
  on a large, correctly specified cohort, where the two agree.

The CI of the internal validation (pe_renal.models.internal_validation / repeated_cv) is checked in
tests/test_internal_validation.py and tests/test_models.py."""
from fractions import Fraction as F

import numpy as np
import pytest
from scipy import stats

from pe_renal.evaluation import METRICS, calibration_table, delong_ci, threshold_metrics


def sample_variance(v): m = sum(v) / len(v); return sum((x - m) ** 2 for x in v) / (len(v) - 1)


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
        assert (a.auc, a.lo, a.hi) == pytest.approx((float(auc), float(auc) - half, min(1.0, float(auc) + half)), abs=1e-12)


# Coverage of DeLong's 95% interval: binormal scores (negatives N(0, 1), positives N(d, 1), AUC = Phi(d / sqrt 2) = 0.75),
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
        for f in covered: covered[f] += centre - f * half < auc < centre + f * half
    assert LOWER <= covered[1.0] <= UPPER, covered
    assert covered[0.5] < LOWER and covered[2.0] > UPPER, covered   # the bounds tell the wrong widths apart


def exact_bootstrap_distributions(tp:int, n1:int, tn:int, n0:int)->dict:
    """Every metric's distribution over stratified bootstrap resamples at a fixed threshold: TP* ~ Binomial(n1, tp/n1) and
    TN* ~ Binomial(n0, tn/n0), independent (each class resampled on its own). Returns metric -> (values, probabilities)."""
    TP, TN = np.meshgrid(np.arange(n1 + 1), np.arange(n0 + 1), indexing="ij")
    P = np.outer(stats.binom.pmf(np.arange(n1 + 1), n1, tp / n1), stats.binom.pmf(np.arange(n0 + 1), n0, tn / n0))
    FN, FP = n1 - TP, n0 - TN
    with np.errstate(divide="ignore", invalid="ignore"):
        v = dict(sensitivity=TP / n1, specificity=TN / n0, accuracy=(TP + TN) / (n1 + n0), ppv=TP / (TP + FP),
                 npv=TN / (TN + FN), f1=2 * TP / (2 * TP + FP + FN))
    out = {}
    for k, x in v.items():
        ok = np.isfinite(x) & (P > 0)
        out[k] = (x[ok], P[ok] / P[ok].sum())                # resamples without a defined value are left out (nanquantile)
    return out


def is_quantile(value:float, dist:tuple, q:float, tol:float)->bool:
    "value is a q-quantile of the distribution, give or take tol in probability: P(X < value) <= q + tol and P(X <= value) >= q - tol."
    x, p = dist
    below, at_or_below = p[x < value - 1e-12].sum(), p[x <= value + 1e-12].sum()
    return below <= q + tol and at_or_below >= q - tol


def test_threshold_metric_cis_are_the_exact_bootstrap_quantiles():
    """150 + 150 patients, 120 positives and 105 negatives on the right side of the threshold. With B = 20,000 resamples
    the empirical distribution function is within 5 SE = 5 sqrt(q (1 - q) / B) = 0.0055 of the exact one at each limit
    (a correct interval fails one of the 12 limits with probability < 1e-5); a limit of an interval half as wide sits
    near the 16th percentile and fails."""
    n1 = n0 = 150
    tp, tn = 120, 105
    y = np.r_[np.ones(n1), np.zeros(n0)].astype(int)
    s = np.r_[np.ones(tp), np.zeros(n1 - tp), np.zeros(tn), np.ones(n0 - tn)]   # predicted positive: score 1 >= 0.5
    B, q = 20_000, 0.025
    tol = 5 * np.sqrt(q * (1 - q) / B)
    t = threshold_metrics(y, s, 0.5, n_boot=B, seed=0)
    exact = exact_bootstrap_distributions(tp, n1, tn, n0)
    assert t.loc["sensitivity", "value"] == tp / n1 and t.loc["specificity", "value"] == tn / n0
    for k in METRICS:
        value, lo, hi = t.loc[k, ["value", "lo", "hi"]]
        assert is_quantile(lo, exact[k], q, tol) and is_quantile(hi, exact[k], 1 - q, tol), (k, lo, hi)
        assert not is_quantile(value - (value - lo) / 2, exact[k], q, tol), k          # half as wide: fails
        assert not is_quantile(value + (hi - value) / 2, exact[k], 1 - q, tol), k
        assert not is_quantile(value - 2 * (value - lo), exact[k], q, tol), k          # twice as wide: fails


def test_calibration_bootstrap_cis_match_the_likelihood_intervals():
    """1000 patients with perfectly calibrated continuous risks: the model y ~ 1 + logit p is correctly specified, so the
    percentile bootstrap interval of the slope (and of the intercept, offset logit p) and the Wald interval of statsmodels'
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
