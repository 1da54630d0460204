"""External-validation statistics: intervals that cover the truth, no signal read as none, KNN vote shares as the study
treats them, updates that repair what they should."""
import numpy as np
import pytest

from pe_renal.core import PeRenalError
from pe_renal.calibration import calibration_slope_intercept
from pe_renal.validate import (apply_update, calibration_in_the_large, calibration_slope, calibration_summary,
                               brier_scaled, fit_update, observed_expected, updating_table)


def _expit(x):
    return 1 / (1 + np.exp(-x))


def test_intervals_cover_the_truth():
    "Risks that are right (outcomes drawn from them): the 95% intervals of O:E, CITL and slope cover 1, 0 and 1 in "
    "about 95% of 400 cohorts of 300 (binomial 99.9% range of the count: 366 to 393)."
    rng = np.random.default_rng(11)
    hits = np.zeros(3)
    for _ in range(400):
        p = _expit(rng.normal(-0.5, 1.2, 300))
        y = (rng.random(300) < p).astype(int)
        oe, citl, (sl, _) = observed_expected(y, p), calibration_in_the_large(y, p, 0), calibration_slope(y, p, 0)
        hits += [oe.lo < 1 < oe.hi, citl.lo < 0 < citl.hi, sl.lo < 1 < sl.hi]
    assert ((hits >= 366) & (hits <= 393)).all(), hits


def test_no_signal_is_read_as_none():
    "Risks unrelated to the outcome: the C-statistic's CI covers 0.5 and the slope's covers 0."
    rng = np.random.default_rng(3)
    p = _expit(rng.normal(0, 1, 400))
    y = (rng.random(400) < 0.4).astype(int)
    s = calibration_summary(y, p, n_boot=0)
    assert s["c_lo"] < 0.5 < s["c_hi"] and s["slope_lo"] < 0 < s["slope_hi"]


def test_vote_shares_are_treated_as_the_study_treats_them():
    "KNN vote shares (0 and 1 among them): the slope and CITL equal pe_renal.evaluation's, which the study reports."
    rng = np.random.default_rng(5)
    z = rng.normal(0, 1, 250)
    y = (rng.random(250) < _expit(1.4 * z)).astype(int)
    votes = np.round(9 * _expit(1.4 * z + rng.normal(0, 1, 250))) / 9
    assert {0.0, 1.0} <= set(votes)
    slope, citl = calibration_slope_intercept(y, votes)
    assert calibration_slope(y, votes)[0].value == pytest.approx(slope, abs=1e-8)
    assert calibration_in_the_large(y, votes).value == pytest.approx(citl, abs=1e-8)
    assert "m=9" in calibration_summary(y, votes, n_boot=0)["smoothing"]


def test_updates_repair_a_shifted_baseline():
    "A hospital with 3 times the odds: CITL near ln 3 before, 0 after the intercept update (and its bootstrap-corrected"
    "value stays within 0.1 of 0); a model too extreme (slope 0.5) gets slope 1 after logistic recalibration."
    rng = np.random.default_rng(8)
    lp = rng.normal(-1, 1, 800)
    p = _expit(lp)
    y = (rng.random(800) < _expit(lp + np.log(3))).astype(int)
    before = calibration_in_the_large(y, p)
    assert before.lo < np.log(3) < before.hi
    after = calibration_in_the_large(y, apply_update(p, fit_update(y, p, "intercept")))
    assert abs(after.value) < 1e-8 and after.lo < 0 < after.hi
    t = updating_table(y[:300], p[:300], n_boot=40).set_index("update")
    assert abs(t.loc["intercept", "citl_corrected"]) < 0.1 and t.loc["none", "citl_corrected"] > 0.6
    y2 = (rng.random(800) < _expit(0.5 * lp)).astype(int)
    assert calibration_slope(y2, p)[0].hi < 0.8
    slope, intercept = calibration_slope(y2, apply_update(p, fit_update(y2, p, "logistic")))
    assert slope.value == pytest.approx(1, abs=1e-8) and intercept == pytest.approx(0, abs=1e-8)


def test_bad_input_is_named():
    with pytest.raises(PeRenalError, match="unknown update"):
        fit_update([0, 1, 0, 1], [0.2, 0.6, 0.3, 0.7], "refit-all")
    with pytest.raises(PeRenalError, match="probabilities"):
        calibration_slope([0, 1, 0, 1], [0.2, 1.6, 0.3, 0.7])
    with pytest.raises(PeRenalError, match="separated"):
        calibration_slope([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])


def test_updating_table_starts_from_the_summary():
    "Without an update the table shows the calibration summary's own numbers, for vote shares too (the same logits)."
    rng = np.random.default_rng(9)
    z = rng.normal(0, 1, 300)
    y = (rng.random(300) < _expit(1.2 * z)).astype(int)
    for p in (_expit(z + rng.normal(0, 0.5, 300)), np.round(7 * _expit(1.2 * z + rng.normal(0, 1, 300))) / 7):
        s = calibration_summary(y, p, n_boot=0)
        none = updating_table(y, p, n_boot=0).set_index("update").loc["none"]
        assert [none.citl_apparent, none.slope_apparent, none.oe_apparent, none.brier_apparent] == pytest.approx(
            [s["citl"], s["slope"], s["oe"], s["brier"]], abs=1e-9)


def test_a_large_k_makes_vote_shares_too_modest_not_the_smoothing():
    """Why a tuned KNN's calibration slope is above 1 at its own hospital and at a second one: with k a large share of
    its training patients (the study's tuning, which judges AUC only, picks k = 21-25 of about 85) every vote averages
    far neighbours, so the shares crowd towards the training prevalence (too modest: slope > 1); a small k gives noisy,
    too extreme shares (slope < 1 before the smoothing, which pulls 0 and 1 in). The Laplace smoothing of 0/1 shares
    is not the cause: the shares strictly inside
    (0, 1), unsmoothed, have a slope as far above 1. Known answer: the true risks have slope 1."""
    from sklearn.neighbors import KNeighborsClassifier
    from pe_renal.validate import logistic_fit
    rng = np.random.default_rng(0)

    def draw(n):
        x = rng.normal(size=(n, 2))
        r = _expit(0.2 + 1.5 * x[:, 0])
        return x, (rng.random(n) < r).astype(int), r
    xt, yt, rt = draw(20000)
    truth = calibration_slope(yt, rt, m=0)[0]
    assert truth.lo < 1 < truth.hi, truth
    for k in (25, 3):
        for _ in range(3):
            x, y, _ = draw(90)
            p = KNeighborsClassifier(k).fit(x, y).predict_proba(xt)[:, 1]
            s = calibration_slope(yt, p, m=k)[0]
            inside = (p > 0) & (p < 1)
            q = p[inside]
            raw = logistic_fit(yt[inside], np.column_stack([np.ones(inside.sum()), np.log(q / (1 - q))]))[0][1]
            assert (s.value > 1.3 and raw > 1.2) if k == 25 else raw < 1, (k, s, raw)


def test_scaled_brier_is_against_the_observed_share_given_to_everyone():
    """The scaled Brier score is 1 - Brier / Brier of the model that gives every patient the observed share (not
    0.5): that model scores exactly 0, perfect risks 1, and any risks 1 - their Brier over the reference Brier
    computed here from the outcomes; at 20% prevalence so that a reference of 0.25 would differ."""
    rng = np.random.default_rng(2)
    y = (rng.random(250) < 0.2).astype(int)
    p = _expit(rng.normal(-1.4 + 1.5 * y, 1))
    b, scaled = brier_scaled(y, p)
    ref = np.mean((y.mean() - y) ** 2)
    assert b == pytest.approx(np.mean((p - y) ** 2)) and scaled == pytest.approx(1 - b / ref)
    assert brier_scaled(y, np.full(len(y), y.mean()))[1] == pytest.approx(0, abs=1e-12)
    assert brier_scaled(y, np.clip(y, 1e-9, 1 - 1e-9))[1] == pytest.approx(1)


def test_updates_fitted_here_are_perfect_in_sample_and_corrected_for_their_optimism():
    """An update refitted on the validation patients is calibrated in the large on them by construction (the logistic
    score equations: O:E 1 and CITL 0; the logistic update also slope 1), and its apparent Brier score is optimistic:
    the bootstrap-corrected Brier is worse (higher) than the apparent one, more so for two fitted parameters than for
    one; without an update nothing is fitted, so the corrected numbers are the apparent ones (negative control)."""
    for seed in range(4):
        rng = np.random.default_rng(seed)
        lp = rng.normal(-0.5, 1.5, 100)
        y = (rng.random(100) < _expit(0.5 + 0.6 * lp)).astype(int)
        u = updating_table(y, _expit(lp), m=0, n_boot=50, seed=1).set_index("update")
        none, icpt, logi = u.loc["none"], u.loc["intercept"], u.loc["logistic"]
        for k in ("citl", "slope", "oe", "brier"):
            assert none[f"{k}_corrected"] == none[f"{k}_apparent"]
        for r in (icpt, logi):
            assert r.oe_apparent == pytest.approx(1, abs=1e-8) and r.citl_apparent == pytest.approx(0, abs=1e-8)
        assert logi.slope_apparent == pytest.approx(1, abs=1e-8)
        assert 0 < icpt.brier_corrected - icpt.brier_apparent < logi.brier_corrected - logi.brier_apparent
