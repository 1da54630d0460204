"""Validation sample size (Riley et al. 2021): pmvalsampsize's known answers, and each variance formula checked by
simulation."""
import math
import warnings

import numpy as np
import pytest

from pe_renal.core import PeRenalError
from pe_renal.valsize import (lp_distribution, lp_prevalence_c, net_benefit_parts, size_c, size_net_benefit, size_oe,
                              size_slope, validation_sample_size)


def test_pmvalsampsize_known_answers():
    """Outcome proportion 0.018, C 0.8: a C-statistic CI 0.1 wide needs 4,252 patients (as pmvalsampsize); an O:E CI
    1 wide needs 905.03 (pmvalsampsize: 905, from its SE grid; rounded up here: 906)."""
    assert math.ceil(size_c(0.018, 0.8, width=0.1)) == 4252
    assert size_oe(0.018, width=1) == pytest.approx(905.03, abs=0.01)
    t = validation_sample_size(0.018, 0.8, oe_width=1, c_width=0.1).set_index("criterion")
    assert t.loc["C-statistic", "patients"] == 4252 and t.loc["O:E ratio", "patients"] == 906


def test_deterministic_and_warning_free():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a = validation_sample_size(0.018, 0.8, thresholds=[0.05])
        b = validation_sample_size(0.018, 0.8, thresholds=[0.05])
    assert a.equals(b)


def test_lp_distribution_round_trip():
    for phi, c in [(0.018, 0.8), (0.5, 0.7), (0.54, 0.9), (0.1, 0.62)]:
        assert lp_prevalence_c(*lp_distribution(phi, c)) == pytest.approx((phi, c), abs=1e-8)
    with pytest.raises(PeRenalError, match="C-statistic"):
        lp_distribution(0.2, 0.4)


def _expit(x):
    return 1 / (1 + np.exp(-x))


def test_net_benefit_variance_by_simulation():
    "The delta-method variance of the standardised net benefit equals the variance over 4000 simulated cohorts (10%)."
    phi, c, t, n = 0.3, 0.75, 0.2, 400
    lp = lp_distribution(phi, c)
    parts = net_benefit_parts(phi, c, t, lp)
    rng = np.random.default_rng(4)
    x = rng.normal(*lp, (4000, n))
    y = rng.random((4000, n)) < _expit(x)
    pos = _expit(x) >= t
    snb = ((pos & y).sum(1) - t / (1 - t) * (pos & ~y).sum(1)) / y.sum(1)
    assert snb.mean() == pytest.approx(parts["snb"], abs=0.01)
    assert snb.var() * n == pytest.approx(parts["n_var"], rel=0.1)
    assert size_net_benefit(phi, c, t, width=0.2, lp=lp) == pytest.approx(
        parts["n_var"] / (0.2 / 3.919928) ** 2, rel=1e-6
    )


def test_oe_and_c_precision_by_simulation():
    "At the sizes asked for, the simulated SDs of ln(O/E) and of the C-statistic are the target SEs (within 10%)."
    from pe_renal.evaluation import roc_auc
    phi, c = 0.2, 0.75
    lp = lp_distribution(phi, c)
    n_oe, n_c = math.ceil(size_oe(phi, width=0.3)), math.ceil(size_c(phi, c, width=0.1))
    rng = np.random.default_rng(6)
    x = rng.normal(*lp, (2000, n_oe))
    y = rng.random((2000, n_oe)) < _expit(x)
    target = math.asinh(0.3 / 2) / 1.959964
    assert np.log(y.sum(1) / _expit(x).sum(1)).std() == pytest.approx(target, rel=0.1)
    cs = []
    for _ in range(300):
        xc = rng.normal(*lp, n_c)
        cs.append(roc_auc((rng.random(n_c) < _expit(xc)).astype(int), xc))
    assert np.std(cs) == pytest.approx(0.1 / (2 * 1.959964), rel=0.1)
    assert size_slope(phi, c, width=0.2, lp=lp) > n_c           # the slope asks for more, as Riley et al. found


def test_slope_size_gives_the_asked_precision_by_simulation():
    """At the size the slope criterion asks for (outcome proportion 0.15, C 0.8, CI 0.4 wide), the calibration slopes
    fitted in 400 simulated cohorts (intercept estimated too) have the target SD 0.4 / (2 x 1.96) within 12%; the
    slope's variance is the (slope, slope) entry of the inverse information, which an LP far from 0 makes 2.6 times
    that of the slope alone."""
    from pe_renal.validate import logistic_fit
    phi, c = 0.15, 0.8
    lp = lp_distribution(phi, c)
    n = math.ceil(size_slope(phi, c, width=0.4, lp=lp))
    rng = np.random.default_rng(1)
    slopes = []
    for _ in range(400):
        x = rng.normal(*lp, n)
        y = (rng.random(n) < _expit(x)).astype(float)
        slopes.append(logistic_fit(y, np.column_stack([np.ones(n), x]))[0][1])
    assert np.mean(slopes) == pytest.approx(1, abs=0.03)
    assert np.std(slopes) == pytest.approx(0.4 / (2 * 1.959964), rel=0.12)
