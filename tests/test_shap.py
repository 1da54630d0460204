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
    Xtr, _ = data.part("train")
    Xte = data.part("test")[0].iloc[:10]          # ten patients show additivity and the sums as well as all of them
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
    Xtr, _ = data.part("train")
    Xte, _ = data.part("test")
    a = explain_model(models["Composite"], Xtr, Xte.iloc[:4], seed=3)
    b = explain_model(models["Composite"], Xtr, Xte.iloc[:4], seed=3)
    np.testing.assert_array_equal(a.values, b.values)


def test_clinical_model_names(fitted):
    data, models = fitted
    Z, cols = model_inputs(models["Clinical"], data.part("test")[0])
    assert set(cols["family"]) == {"clinical"} and any(n.startswith("parity=") for n in cols["feature"])
    assert Z.shape == (len(data.part("test")[0]), len(cols))


def test_background_is_real_training_patients(fitted):
    data, models = fitted
    Xtr, _ = data.part("train")
    Xte, _ = data.part("test")
    m = models["Composite"]
    ex = explain_model(m, Xtr, Xte.iloc[:3], n_background=20, seed=0)
    assert len(ex.background) == 20 and set(ex.background) <= set(Xtr.index)
    # the expected value is the mean prediction over those patients, whose one-hot columns are 0 or 1
    np.testing.assert_allclose(ex.base_values, m.predict_proba(Xtr.loc[ex.background])[:, 1].mean(), atol=1e-12)
    Z, cols = model_inputs(m, Xtr.loc[ex.background])
    onehot = Z[cols.loc[cols["feature"].str.contains("="), "feature"]].to_numpy()
    assert onehot.size and np.isin(onehot, [0.0, 1.0]).all()


def test_family_table_leads_with_the_absolute_net_contribution(fitted):
    data, models = fitted
    Xtr, _ = data.part("train")
    Xte, _ = data.part("test")
    ex = explain_model(models["Composite"], Xtr, Xte.iloc[:10], seed=0)
    fam = importance(ex)["family"]
    assert list(fam.columns[:2]) == ["mean_abs_net_contribution", "mean_net_contribution"]
    fam_of = ex.columns.set_index("feature")["family"]
    for f in fam.index:
        net = ex.values[:, (fam_of[ex.feature_names] == f).to_numpy()].sum(1)
        assert fam.loc[f, "mean_net_contribution"] == pytest.approx(net.mean())
        assert fam.loc[f, "mean_abs_net_contribution"] == pytest.approx(np.abs(net).mean())
    assert fam["mean_abs_net_contribution"].is_monotonic_decreasing
    assert set(fam.attrs["notes"]) == set(fam.columns)          # every figure says what it means


def test_written_figures_are_distinct(fitted, tmp_path):
    import hashlib
    from pe_renal.shap import write_shap
    data, models = fitted
    Xtr, _ = data.part("train")
    Xte, _ = data.part("test")
    ex = explain_model(models["Composite"], Xtr, Xte.iloc[:8], seed=0)
    write_shap(ex, tmp_path)
    digest = {n: hashlib.sha256((tmp_path/"figures"/f"{n}.png").read_bytes()).hexdigest()
              for n in ("shap_beeswarm", "shap_bar", "shap_families")}
    assert len(set(digest.values())) == 3, digest
    assert (tmp_path/"tables"/"shap_importance_family_columns.csv").exists()
