"""External-validation numbers against independent references: R's rms::val.prob (intercept, slope, Brier, Emax, E90,
Eavg, C) on fixed cases, the committed values always and recomputed with R where Rscript is present; statsmodels'
binomial and Poisson GLMs with an offset for calibration-in-the-large, the slope and O:E."""
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pe_renal.evaluation import roc_auc
from pe_renal.validate import (brier_scaled, calibration_curve_flexible, calibration_in_the_large, calibration_slope,
                               lowess, observed_expected)

REF = Path(__file__).parent / "reference"
CASES = pd.read_csv(REF / "val_prob_cases.csv")
RMS = pd.read_csv(REF / "val_prob_reference.csv").set_index("case")


def _ours(x):
    y, p = x["y"].to_numpy(), x["p"].to_numpy()
    slope, intercept = calibration_slope(y, p, m=0)      # m=0: the risks as given (the KNN case is smoothed already)
    cc = calibration_curve_flexible(y, p, n_boot=0)
    return dict(intercept=intercept, slope=slope.value, brier=brier_scaled(y, p)[0], emax=cc.emax, e90=cc.e90,
                eavg=cc.ici, c_exact=roc_auc(y, p))


@pytest.mark.parametrize("case", RMS.index.tolist())
def test_matches_rms_val_prob(case):
    """Every statistic equals val.prob's to 1e-6 (the fits converge to 1e-10; lowess is the same algorithm); the
    C-statistic
    equals Hmisc::somers2's exactly, and val.prob's own (from predicted risks rounded by lrm.fit) to 1e-3."""
    ours = _ours(CASES[CASES["case"] == case])
    for k, v in ours.items():
        assert v == pytest.approx(RMS.loc[case, k], abs=1e-6, rel=1e-6), k
    assert ours["c_exact"] == pytest.approx(RMS.loc[case, "c"], abs=1e-3)


def test_the_cases_span_what_validation_meets():
    "The fixed cases hold a calibrated model, slopes well below and above 1, vote shares, heavy ties and no signal."
    assert RMS.loc["calibrated_n300", "slope"] > 0.7 and RMS.loc["overfitted_n200", "slope"] < 0.7
    assert RMS.loc["underfitted_n500", "slope"] > 1.3 and abs(RMS.loc["ties_n60", "c"] - 0.5) < 0.1
    assert CASES.query("case == 'ties_n60'")["p"].nunique() == 6


@pytest.mark.skipif(shutil.which("Rscript") is None, reason="R (Rscript) is not installed")
def test_committed_reference_is_what_rms_gives(tmp_path):
    "R recomputes the reference file from the committed cases; it must agree with what is committed."
    ok = subprocess.run(["Rscript", "-e", "quit(status = !requireNamespace('rms', quietly = TRUE))"]).returncode == 0
    if not ok:
        pytest.skip("R's rms package is not installed (Debian: r-cran-rms)")
    out = tmp_path / "ref.csv"
    r = subprocess.run(["Rscript", str(REF / "val_prob_reference.R"), str(REF / "val_prob_cases.csv"), str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    fresh = pd.read_csv(out).set_index("case")
    pd.testing.assert_frame_equal(fresh, RMS, rtol=1e-9, atol=1e-12)


def test_lowess_is_clevelands():
    "Local linear fits reproduce a straight line exactly; on a small sample without the speed-up (delta 0) each fitted "
    "value is the tricube-weighted least-squares line at that point over its nearest f*n neighbours."
    x = np.linspace(0, 1, 50)
    assert np.allclose(lowess(x, 2 * x + 1)[1], 2 * x + 1)
    rng = np.random.default_rng(1)
    x = np.sort(rng.random(30))
    y = rng.random(30)
    _, fit = lowess(x, y, delta=0)
    ns = int(2 / 3 * 30)
    for i in (0, 7, 15, 29):
        d = np.abs(x - x[i])
        near = np.argsort(d, kind="stable")[:ns]
        h = d[near].max()
        w = np.clip(1 - (d / h) ** 3, 0, None) ** 3
        w[d > 0.999 * h] = 0
        A = np.column_stack([np.ones(30), x - x[i]]) * np.sqrt(w)[:, None]
        assert fit[i] == pytest.approx(np.linalg.lstsq(A, y * np.sqrt(w), rcond=None)[0][0], abs=1e-10)


def _statsmodels_cases():
    return [(c, CASES[CASES["case"] == c]) for c in RMS.index if c != "ties_n60"]


@pytest.mark.parametrize("case, x", _statsmodels_cases(), ids=lambda v: v if isinstance(v, str) else "")
def test_matches_statsmodels_glm_with_offset(case, x):
    "CITL and the slope equal statsmodels' binomial GLMs (estimate and Wald CI); O:E equals the Poisson GLM with offset"
    "ln(p), whose variance 1/O exceeds the binomial one, 1/O - 1/n, by exactly 1/n."
    sm = pytest.importorskip("statsmodels.api")
    y, p = x["y"].to_numpy(), x["p"].to_numpy()
    lp = np.log(p / (1 - p))
    g = sm.GLM(y, np.ones((len(y), 1)), family=sm.families.Binomial(), offset=lp).fit(tol=1e-12)
    citl = calibration_in_the_large(y, p, m=0)
    assert citl.value == pytest.approx(g.params[0], abs=1e-8)
    assert (citl.lo, citl.hi) == pytest.approx(tuple(g.conf_int()[0]), abs=1e-6)
    g2 = sm.GLM(y, sm.add_constant(lp), family=sm.families.Binomial()).fit(tol=1e-12)
    slope, a = calibration_slope(y, p, m=0)
    assert (slope.value, a) == pytest.approx((g2.params[1], g2.params[0]), abs=1e-8)
    assert (slope.lo, slope.hi) == pytest.approx(tuple(g2.conf_int()[1]), abs=1e-6)
    gp = sm.GLM(y, np.ones((len(y), 1)), family=sm.families.Poisson(), offset=np.log(p)).fit(tol=1e-12)
    oe = observed_expected(y, p)
    assert oe.value == pytest.approx(np.exp(gp.params[0]), rel=1e-8)
    se_ours = np.log(oe.hi / oe.value) / 1.959963984540054
    assert se_ours ** 2 == pytest.approx(gp.bse[0] ** 2 - 1 / len(y), rel=1e-6)
