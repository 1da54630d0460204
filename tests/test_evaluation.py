"""Threshold metrics, calibration and decision curves: behaviour beyond the reference values."""
import numpy as np
import pandas as pd
import pytest

from pe_renal.evaluation import (EvaluationError, calibration_curve, calibration_slope_intercept, decision_curve,
                                 delong_comparisons, performance_table, threshold_metrics, youden_threshold)


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
    assert len(cc) == len(np.unique(p)) and cc["n"].sum() == 200
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
