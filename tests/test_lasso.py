"LASSO selection (pe_renal.lasso): signal recovery, both rules, the cache, edge cases and bad input."
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline

from pe_renal.core import PeRenalError
from pe_renal.lasso import (LassoSelector, NoFeaturesSelected, NoFeaturesSelectedError, lasso_cache_clear,
                            lasso_cache_info, selection_stability, simulated_deep_features,
                            stratified_bootstrap)
from pe_renal.lasso_figures import lasso_table, write_lasso


def sim_features(n=80, p=300, n_signal=10, strength=1.2, seed=0, effect=1.0):
    """SIMULATED deep features for tests: a latent severity drives `n_signal` columns; the rest is correlated noise.
    Returns (X with deep_#### columns indexed by patient_id, 0/1 labels, names of the signal columns)."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.r_[np.ones(n // 2 + n % 2, int), np.zeros(n // 2, int)])
    z = rng.standard_normal(n) + 1.5 * effect * y
    X = rng.standard_normal((n, 4)) @ rng.standard_normal((4, p)) * 0.3 + rng.standard_normal((n, p))
    sig = rng.choice(p, n_signal, replace=False)
    X[:, sig] += strength * z[:, None]
    names = [f"deep_{j:04d}" for j in range(p)]
    return (pd.DataFrame(X, columns=names, index=pd.Index([f"P{i:03d}" for i in range(n)], name="patient_id")),
            y, [names[j] for j in sig])


@pytest.fixture(scope="module")
def sim():
    return sim_features()


@pytest.fixture(scope="module")
def fitted(sim):
    X, y, _ = sim
    return LassoSelector().fit(X, y)


def test_selects_signal(sim, fitted):
    X, y, sig = sim
    assert 1 <= len(fitted.selected_) <= 40
    assert len(set(fitted.selected_) & set(sig)) / len(fitted.selected_) > 5 * len(sig) / X.shape[1]
    assert lasso_table(fitted)["feature"].iloc[0] in sig
    assert fitted.support_.sum() == len(fitted.selected_) == fitted.transform(X).shape[1]
    assert list(fitted.transform(X).index) == list(X.index)
    assert fitted.coef_.shape == (X.shape[1],) and fitted.n_splits_ == 10


def test_rules_follow_glmnet(sim, fitted):
    X, y, _ = sim
    one = LassoSelector(rule="1se").fit(X, y)
    i = np.argmin(fitted.cv_mean_)
    assert fitted.alpha_ == fitted.alpha_min_ == fitted.alphas_[i]
    assert (
        one.alpha_ == one.alpha_1se_ == fitted.alphas_[fitted.cv_mean_ <= fitted.cv_mean_[i] + fitted.cv_se_[i]].max()
    )
    assert one.alpha_ >= fitted.alpha_ and len(one.selected_) <= len(fitted.selected_)
    np.testing.assert_allclose(fitted.cv_se_, fitted.cv_folds_.std(1, ddof=1) / np.sqrt(10))
    assert np.all(np.diff(fitted.alphas_) < 0)          # λ decreasing, as glmnet


def test_cache_gives_identical_results(sim):
    X, y, _ = sim
    lasso_cache_clear()
    plain = LassoSelector(cache=False).fit(X, y)
    first = LassoSelector().fit(X, y)
    again = LassoSelector().fit(X, y)
    info = lasso_cache_info()
    assert (info["misses"], info["hits"]) == (1, 1)
    for a in ("coef_", "alphas_", "cv_mean_", "cv_se_", "cv_folds_", "path_", "support_"):
        np.testing.assert_array_equal(getattr(plain, a), getattr(again, a))
    assert plain.selected_ == first.selected_ == again.selected_ and plain.alpha_ == again.alpha_
    np.testing.assert_array_equal(plain.scaler_.mean_, again.scaler_.mean_)
    again.coef_[:] = 0
    again.scaler_.mean_[:] = 0  # a fit never shares arrays with the cache
    assert LassoSelector().fit(X, y).selected_ == plain.selected_
    LassoSelector(rule="1se").fit(X, y)                      # the rule is applied after the cached CV
    assert lasso_cache_info()["misses"] == 1
    X2 = X.copy()
    X2.iloc[0, 0] += 1e-9  # any change in the data is a new fit
    LassoSelector().fit(X2, y)
    LassoSelector(cv=5).fit(X, y)
    assert lasso_cache_info()["misses"] == 3


def test_same_seed_same_result_and_clone(sim):
    X, y, _ = sim
    a, b = (
        LassoSelector(cache=False, random_state=3).fit(X, y),
        clone(LassoSelector(cache=False, random_state=3)).fit(X, y),
    )
    assert a.selected_ == b.selected_ and a.alpha_ == b.alpha_
    assert LassoSelector().get_params()["rule"] == "min"


def test_in_a_pipeline_with_cv(sim):
    X, y, _ = sim
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoFeaturesSelected)
        auc = cross_val_score(
            make_pipeline(LassoSelector(cv=5), KNeighborsClassifier(7)), X, y, cv=3, scoring="roc_auc"
        )
    assert auc.mean() > 0.6


def test_more_features_than_patients():
    X, y, sig = sim_features(n=30, p=1000, n_signal=8, strength=2.0, seed=2)
    sel = LassoSelector().fit(X, y)
    assert sel.n_splits_ == 10 and 0 < len(sel.selected_) < 30
    assert len(set(sel.selected_) & set(sig)) >= 1


def test_constant_columns_never_selected(sim):
    X, y, _ = sim
    Xc = X.assign(const_zero=0.0, const_five=5.0)
    sel = LassoSelector().fit(Xc, y)
    assert "const_zero" not in sel.selected_ and "const_five" not in sel.selected_
    assert np.isfinite(sel.coef_).all() and np.isfinite(sel.signature(Xc)).all()
    assert sel.scaler_.scale_[-1] == 1.0                      # zero variance: scale 1, standardised value 0


def test_no_feature_selected_warns_or_raises():
    rng = np.random.default_rng(5)
    X = pd.DataFrame(rng.standard_normal((50, 200)), columns=[f"deep_{j:04d}" for j in range(200)])
    y = np.r_[np.zeros(25, int), np.ones(25, int)]
    with pytest.warns(NoFeaturesSelected, match="no deep feature carries signal"):
        sel = LassoSelector(rule="1se").fit(X, y)
    assert sel.selected_ == [] and sel.transform(X).shape == (50, 0) and len(sel.get_feature_names_out()) == 0
    assert len(lasso_table(sel)) == 0
    with pytest.raises(NoFeaturesSelectedError, match="cannot be built"):
        LassoSelector(rule="1se", on_empty="raise").fit(X, y)
    assert issubclass(NoFeaturesSelectedError, PeRenalError)


def test_a_class_smaller_than_the_folds(sim):
    X, y, _ = sim
    keep = np.r_[np.flatnonzero(y == 0), np.flatnonzero(y == 1)[:3]]
    sel = LassoSelector(on_empty="warn")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoFeaturesSelected)
        sel.fit(X.iloc[keep], y[keep])
    assert sel.n_splits_ == 3                                 # folds shrink so each holds both classes
    keep = np.r_[np.flatnonzero(y == 0), np.flatnonzero(y == 1)[:1]]
    with pytest.raises(PeRenalError, match="at least 2 of each class"):
        LassoSelector().fit(X.iloc[keep], y[keep])


@pytest.mark.parametrize("labels, match", [
    (lambda y: np.zeros_like(y), "both preeclampsia and normal"),
    (lambda y: np.where(y == 1, 2, 0), "must be 0/1"),
    (lambda y: y[:-1], "labels for"),
    (lambda y: np.where(np.arange(len(y)) == 3, np.nan, y), "missing"),
])
def test_bad_labels(sim, labels, match):
    X, y, _ = sim
    with pytest.raises(PeRenalError, match=match):
        LassoSelector().fit(X, labels(y))


def test_missing_feature_values_are_named(sim):
    X, y, _ = sim
    Xb = X.copy()
    Xb.iloc[7, 12] = np.nan
    Xb.iloc[9, 12] = np.inf
    with pytest.raises(PeRenalError, match=r"deep_0012.*P007") as e:
        LassoSelector().fit(Xb, y)
    assert "re-extract" in str(e.value)


def test_transform_needs_the_training_columns(sim, fitted):
    X, _, _ = sim
    with pytest.raises(PeRenalError, match="deep_0005"):
        fitted.transform(X.drop(columns=["deep_0005"]))
    assert fitted.transform(X[list(reversed(X.columns))]).columns.tolist() == fitted.selected_   # order by name


def test_bad_parameters(sim):
    X, y, _ = sim
    for kw, match in ((dict(rule="aic"), "rule"), (dict(method="ridge"), "method"), (dict(cv=1), "at least 2 folds")):
        with pytest.raises(PeRenalError, match=match):
            LassoSelector(**kw).fit(X, y)


def test_array_input(sim):
    X, y, _ = sim
    sel = LassoSelector().fit(X.to_numpy(), y)
    assert all(f.startswith("x") for f in sel.selected_)
    assert sel.transform(X.to_numpy()).shape == (len(X), len(sel.selected_))


def test_signature_is_the_linear_lasso_score(sim, fitted):
    X, y, _ = sim
    s = fitted.signature(X)
    ls = fitted.linear_signature()
    np.testing.assert_allclose(s, fitted.intercept_ + fitted.scaler_.transform(X.to_numpy()) @ fitted.coef_)
    np.testing.assert_allclose(s, X[ls.features].to_numpy() @ ls.weights + ls.bias)
    np.testing.assert_allclose(fitted.intercept_, y.mean())
    assert roc_auc_score(y, s) > 0.8


def test_logistic_alternative(sim):
    X, y, sig = sim
    sel = LassoSelector(method="logistic", alphas=15, cv=5).fit(X, y)
    assert 1 <= len(sel.selected_) and len(set(sel.selected_) & set(sig)) >= 1
    assert len(sel.alphas_) == 15 and np.all(np.diff(sel.alphas_) < 0)
    p = 1 / (1 + np.exp(-sel.signature(X)))                    # signature = log-odds of the refitted L1-logistic model
    from sklearn.linear_model import LogisticRegression
    ref = LogisticRegression(C=1 / (sel.alpha_ * len(y)), l1_ratio=1.0, solver="liblinear", max_iter=10000,
                             random_state=42).fit(sel.scaler_.transform(X.to_numpy()), y)
    np.testing.assert_allclose(p, ref.predict_proba(sel.scaler_.transform(X.to_numpy()))[:, 1], atol=1e-6)


def test_selection_stability(sim, fitted):
    X, y, sig = sim
    st = selection_stability(X, y, fitted, n_boot=20, seed=1)
    pd.testing.assert_frame_equal(st, selection_stability(X, y, fitted, n_boot=20, seed=1))
    freq = st.set_index("feature")["frequency"].reindex(X.columns, fill_value=0)
    assert freq[sig].mean() > 5 * freq.drop(sig).mean()
    assert set(st.loc[st["selected"], "feature"]) == set(fitted.selected_)
    assert st["frequency"].between(0, 1).all() and st.attrs["n_boot"] == 20
    cv = selection_stability(X, y, LassoSelector(cv=5), n_boot=3, refit_cv=True, seed=1)
    assert {"feature", "frequency", "mean_coefficient", "selected"} <= set(cv.columns)


def test_stratified_bootstrap_keeps_class_sizes():
    y = np.r_[np.zeros(7, int), np.ones(4, int)]
    idx = stratified_bootstrap(y, 50, seed=0)
    assert idx.shape == (50, 11) and (y[idx].sum(1) == 4).all()
    np.testing.assert_array_equal(idx, stratified_bootstrap(y, 50, seed=0))


def test_simulated_features_interface():
    sev = pd.Series(np.random.default_rng(0).standard_normal(40), index=[f"S{i:04d}" for i in range(40)])
    d = simulated_deep_features(sev, n_features=64, n_signal=5, seed=1)
    assert d.shape == (40, 64) and d.index.name == "patient_id" and d.dtypes.eq(np.float32).all()
    assert d.columns[0] == "deep_0000" and d.attrs["simulated"] and len(d.attrs["signal_columns"]) == 5
    with pytest.raises(PeRenalError, match="n_signal"):
        simulated_deep_features(sev, n_features=4, n_signal=5)


def test_write_lasso(tmp_path, sim, fitted):
    X, y, _ = sim
    files = write_lasso(fitted, tmp_path, selection_stability(X, y, fitted, n_boot=3))
    names = sorted(p.relative_to(tmp_path).as_posix() for p in files)
    assert names == ["figures/lasso_coefficients.png", "figures/lasso_cv.png", "figures/lasso_path.png",
                     "figures/selection_stability.png", "tables/lasso_coefficients.csv", "tables/lasso_cv.csv",
                     "tables/selection_stability.csv"]
    cv = pd.read_csv(tmp_path / "tables" / "lasso_cv.csv")
    assert cv["rule"].fillna("").str.contains("min").sum() == 1


def test_warns_when_lambda_min_is_the_grid_edge(sim):
    from pe_renal.lasso import LambdaAtGridEdge
    X, y, _ = sim
    with pytest.warns(LambdaAtGridEdge, match="smallest λ of the grid"):
        LassoSelector(eps=0.6, alphas=4).fit(X, y)          # a grid stopping far above the best λ


def test_lars_path_is_exact_and_fast_on_collinear_features():
    "The LASSO path from LARS equals coordinate descent, and stays fast when one direction dominates the features."
    import time
    from sklearn.linear_model import lasso_path
    from pe_renal.lasso import _lasso_coefs_at
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 300))
    X[:, 1:40] += X[:, [0]] * 2
    y = (X[:, 0] + X[:, 5] + rng.normal(0, 1, 120) > 0).astype(float)
    X = (X - X.mean(0)) / X.std(0)
    yc = y - y.mean()
    amax = np.abs(X.T @ yc).max() / len(y)
    alphas = np.logspace(np.log10(amax), np.log10(amax * 0.01), 30)
    _, C, _ = lasso_path(X, yc, alphas=alphas, tol=1e-10, max_iter=100000)
    np.testing.assert_allclose(_lasso_coefs_at(X, yc, alphas), C, atol=1e-6)
    # features dominated by one direction (as those of an untrained ResNet152)
    f = rng.normal(size=(195, 1)) * 50 + rng.normal(size=(195, 1500))
    lab = (f[:, 3] - f[:, 0] + rng.normal(0, 0.5, 195) > 0).astype(int)       # the part of feature 3 not shared
    t = time.perf_counter()
    sel = LassoSelector(cache=False).fit(pd.DataFrame(f, columns=[f"deep_{j:04d}" for j in range(1500)]), lab)
    assert time.perf_counter() - t < 30 and len(sel.selected_) > 0
    assert roc_auc_score(lab, sel.signature(pd.DataFrame(f, columns=[f"deep_{j:04d}" for j in range(1500)]))) > 0.8
