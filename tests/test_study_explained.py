"""SHAP and calibration of the study, re-derived from the study's own saved files (predictions.csv, tables/, run.json)
with independent code: a background drawn from the wrong patients, SHAP values that do not add up to the prediction, or
a calibration fitted on the wrong rows or the wrong class fails here, whatever function the fault sits in.

The decision curve is saved only as a figure (figures/decision_curve_test.png): no table holds its net benefits, so
they are checked against hand counts in tests/test_evaluation_reference.py, not here."""
import json
import re

import numpy as np
import pandas as pd
import pytest

sm = pytest.importorskip("statsmodels.api")

MODELS = ["DL", "Clinical", "Composite"]


@pytest.fixture(scope="module")
def saved(study_results):
    out = study_results[3]
    t = out / "tables"
    return dict(out=out, run=json.loads((out / "run.json").read_text()), pred=pd.read_csv(out / "predictions.csv"),
                shap=pd.read_csv(t / "shap_values.csv"), lasso=pd.read_csv(t / "lasso_coefficients.csv"),
                models=pd.read_csv(t / "models.csv").set_index("model"), calibration=pd.read_csv(t / "calibration.csv"),
                feature=pd.read_csv(t / "shap_importance_feature.csv", index_col=0),
                family=pd.read_csv(t / "shap_importance_family.csv", index_col="family"))


def shap_parts(saved):
    "The SHAP table's values (patients x inputs), expected values and predictions, indexed by patient."
    s = saved["shap"].set_index("patient_id")
    return s.drop(columns=["expected_value", "prediction"]), s["expected_value"], s["prediction"]


def background_draw(n:int, k:int, seed:int)->np.ndarray:
    """The background as pe_renal.shap.explain_model defines it: k of the n training patients, drawn without
    replacement, seeded."""
    return np.sort(np.random.default_rng(seed).choice(n, size=min(k, n), replace=False))


def test_shap_explains_every_test_patients_composite_prediction(saved):
    values, base, prediction = shap_parts(saved)
    test = saved["pred"][saved["pred"]["split"] == "test"].set_index("patient_id")
    assert sorted(values.index) == sorted(test.index)                     # every test patient, and no one else
    np.testing.assert_allclose(prediction, test.loc[values.index, "p_Composite"], rtol=0, atol=1e-12)


def test_shap_values_add_up_to_the_prediction_minus_the_base_value(saved):
    "Efficiency, the identity that defines SHAP values: base value + sum of a patient's values = her prediction."
    values, base, prediction = shap_parts(saved)
    assert values.shape[1] >= 2 and np.abs(values.to_numpy()).max() > 1e-3   # there is something to add up
    np.testing.assert_allclose(base + values.sum(axis=1), prediction, rtol=0, atol=1e-9)


def test_shap_base_value_is_the_mean_prediction_over_training_patients(saved):
    """The base value is the mean prediction over the background: `shap_background` training patients drawn with the
    run's seed (rows of the modelling table, the order of predictions.csv). The same draw from the test patients, or
    the mean over every training patient, is another number: the check tells those rules apart."""
    _, base, _ = shap_parts(saved)
    cfg, pred = saved["run"]["config"], saved["pred"]
    assert base.nunique() == 1                                             # one expected value for every patient
    p = {part: pred.loc[pred["split"] == part, "p_Composite"].to_numpy() for part in ("train", "test")}
    draw = lambda part: p[part][background_draw(len(p[part]), cfg["shap_background"], cfg["seed"])].mean()
    assert cfg["shap_background"] < len(p["train"])                        # a real draw, not every training patient
    assert base.iloc[0] == pytest.approx(draw("train"), abs=1e-12)
    # negative controls: other rules give other base values (KNN probabilities are vote shares, so one other rule may
    # coincide by chance on a given cohort; the two together may not)
    assert max(abs(draw("test") - base.iloc[0]), abs(p["train"].mean() - base.iloc[0])) > 1e-6


def test_shap_inputs_are_the_composite_models_inputs(saved):
    "Deep inputs: exactly the features LASSO kept; every input of the composite model is explained."
    values, _, _ = shap_parts(saved)
    deep = [c for c in values.columns if c.startswith("deep_")]
    kept = saved["lasso"].loc[saved["lasso"]["coefficient"] != 0, "feature"]
    assert len(deep) >= 1 and sorted(deep) == sorted(kept)
    assert values.shape[1] == saved["models"].loc["Composite", "inputs"]
    assert saved["models"].loc["Composite", "deep_kept"] == len(deep)


def test_shap_importance_tables_are_re_derived_from_the_values(saved):
    "Mean |SHAP| per input; per family (deep_ inputs vs clinical ones) the mean |net| and mean net contribution."
    values, _, _ = shap_parts(saved)
    feat = saved["feature"]
    np.testing.assert_allclose(feat.loc[values.columns, "mean_abs_shap"], values.abs().mean(), rtol=0, atol=1e-12)
    family = np.where(values.columns.str.startswith("deep_"), "deep", "clinical")
    assert (feat.loc[values.columns, "family"].to_numpy() == family).all()
    net = values.T.groupby(family).sum().T  # per patient: the family's summed SHAP values
    fam = saved["family"]
    assert set(fam.index) == {"deep", "clinical"}
    for f in fam.index:
        assert fam.loc[f, "mean_abs_net_contribution"] == pytest.approx(net[f].abs().mean(), abs=1e-12), f
        assert fam.loc[f, "mean_net_contribution"] == pytest.approx(net[f].mean(), abs=1e-12), f
        assert fam.loc[f, "n_features"] == (family == f).sum(), f


def test_calibration_table_is_re_derived_from_the_test_predictions(saved):
    """Each model's calibration slope (y ~ 1 + logit q) and intercept (y ~ 1, offset logit q) are statsmodels' maximum-
    likelihood fits on the test patients of predictions.csv, q = (k p + 1)/(k + 2) the Laplace-smoothed KNN vote share
    (k from models.csv); the Brier score is the mean of (p - y)^2 over those patients."""
    cal, pred, cfg = saved["calibration"].set_index("model"), saved["pred"], saved["run"]["config"]
    assert sorted(cal.index) == sorted(MODELS) and (cal["cohort"] == "test").all()
    test = pred[pred["split"] == "test"]
    y = test["label"].to_numpy(int)
    for m in MODELS:
        r = cal.loc[m]
        k = int(re.search(r"n_neighbors=(\d+)", saved["models"].loc[m, "settings"]).group(1))
        every = pred[f"p_{m}"].to_numpy() * k
        assert np.allclose(every, np.round(every), rtol=0, atol=1e-9), m  # the probabilities are vote shares out of k
        assert r.smoothing == f"Laplace (m*p+1)/(m+2), m={k}", (m, r.smoothing)
        p = test[f"p_{m}"].to_numpy(float)
        q = (k * p + 1) / (k + 2)
        x = np.log(q / (1 - q))
        slope = sm.GLM(y, sm.add_constant(x), family=sm.families.Binomial()).fit(tol=1e-12).params[1]
        icpt = sm.GLM(y, np.ones((len(y), 1)), family=sm.families.Binomial(), offset=x).fit(tol=1e-12).params[0]
        assert r.n == len(y), m
        if x[y == 1].min() >= x[y == 0].max() or x[y == 0].min() >= x[y == 1].max():  # (quasi-)separated test patients:
            assert r.slope == np.inf * np.sign(x[y == 1].mean() - x[y == 0].mean()), m  # no finite maximum, the slope's
        else:                                                                          # likelihood heads to +-inf
            assert r.slope == pytest.approx(slope, abs=1e-6), m
        assert r.intercept == pytest.approx(icpt, abs=1e-6), m
        assert r.brier == pytest.approx(np.mean((p - y) ** 2), abs=1e-12), m
        assert (
            r.n_boot == cfg["n_boot_ci"]
            and r.slope_lo <= r.slope <= r.slope_hi
            and r.intercept_lo <= r.intercept <= r.intercept_hi
        ), m
