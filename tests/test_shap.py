"""SHAP of the composite model: additivity, family sums, seeding, names."""
import numpy as np
import pytest

from pe_renal.models import demo_data, fit_models
from pe_renal.shap import explain_model, importance, model_inputs, shap_values_table


@pytest.fixture(scope="module")
def fitted():
    data = demo_data(n=100, seed=1, n_features=256)
    models, _ = fit_models(data)
    return data, models


def test_additivity_and_families(fitted):
    data, models = fitted
    Xtr, _ = data.part("train"); Xte, _ = data.part("test")
    ex = explain_model(models["Composite"], Xtr, Xte, seed=0)
    np.testing.assert_allclose(ex.values.sum(1) + ex.base_values, ex.prediction, atol=1e-9)
    np.testing.assert_allclose(ex.prediction, models["Composite"].predict_proba(Xte)[:, 1], atol=1e-12)
    imp = importance(ex)
    assert imp["family"]["sum_of_feature_importance"].sum() == pytest.approx(imp["feature"]["mean_abs_shap"].sum())
    assert set(imp["family"].index) == {"deep", "clinical"}
    assert imp["family"].loc["deep", "n_features"] == (imp["feature"]["family"] == "deep").sum()
    assert "parity" in imp["variable"].index and not any(v.startswith("parity=") for v in imp["variable"].index)
    t = shap_values_table(ex)
    assert list(t.index) == list(Xte.index) and t.shape[1] == ex.values.shape[1] + 2


def test_seeded(fitted):
    data, models = fitted
    Xtr, _ = data.part("train"); Xte, _ = data.part("test")
    a = explain_model(models["Composite"], Xtr, Xte.iloc[:4], seed=3)
    b = explain_model(models["Composite"], Xtr, Xte.iloc[:4], seed=3)
    np.testing.assert_array_equal(a.values, b.values)


def test_clinical_model_names(fitted):
    data, models = fitted
    Z, cols = model_inputs(models["Clinical"], data.part("test")[0])
    assert set(cols["family"]) == {"clinical"} and any(n.startswith("parity=") for n in cols["feature"])
    assert Z.shape == (len(data.part("test")[0]), len(cols))
