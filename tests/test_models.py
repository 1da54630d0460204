"The three models (pe_renal.models): controls, reproducibility, leakage guard, internal validation and edge cases."
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import KNeighborsClassifier

from pe_renal.core import PeRenalError
from pe_renal.evaluation import delong_ci
from pe_renal.lasso import NoFeaturesSelected, NoFeaturesSelectedError, inner_folds, lasso_cache_clear, lasso_cache_info
from pe_renal.models import (ModelData, SafeStandardScaler, TunedClassifier, clinical_preprocessor, compare_classifiers,
                             demo_data, fit_models, knn_grid, lasso_of, make_model, make_models, model_data,
                             model_summary)
from pe_renal.internal import bootstrap_optimism, repeated_cv

SMALL = dict(n=120, n_features=256, n_signal=16, seed=1)    # 84 training patients x 256 simulated deep features


@pytest.fixture(scope="module")
def data():
    return demo_data(**SMALL)


@pytest.fixture(scope="module")
def fit(data):
    return fit_models(data)


def learned(fitted):
    "Everything the fitted models learned, for comparing two fits."
    out = {}
    for name, m in fitted.items():
        ct, clf = m.named_steps["features"], m.named_steps["classifier"]
        if (sel := lasso_of(m)) is not None:
            out[name, "lasso"] = (sel.scaler_.mean_, sel.scaler_.scale_, sel.coef_, sel.selected_, sel.alpha_)
            out[name, "deep_scale"] = ct.named_transformers_["deep"].named_steps["scale"].mean_
        if "num" in ct.named_transformers_:
            num, cat = ct.named_transformers_["num"], ct.named_transformers_["cat"]
            out[name, "clinical"] = (num.named_steps["impute"].statistics_, num.named_steps["scale"].mean_,
                                     num.named_steps["scale"].scale_, cat.named_steps["impute"].statistics_,
                                     cat.named_steps["onehot"].categories_)
        out[name, "classifier"] = (clf.best_params_, clf.best_score_, clf.cv_results_["mean_auc"].to_numpy())
    return out


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        for x, y in zip(a[k], b[k]):
            if isinstance(x, list) and x and isinstance(x[0], np.ndarray):
                assert all(np.array_equal(u, v) for u, v in zip(x, y)), k
            elif isinstance(x, np.ndarray):
                np.testing.assert_array_equal(x, y, err_msg=str(k))
            else:
                assert x == y, k


def test_positive_control(fit):
    fitted, results = fit
    assert set(results) == {"DL", "Clinical", "Composite"}
    a = delong_ci(*results["Composite"]["test"])
    assert a.auc > 0.7 and a.lo > 0.5                       # clearly above chance on held-out patients
    assert lasso_of(fitted["DL"]).selected_ == lasso_of(fitted["Composite"]).selected_


def test_negative_control_covers_chance():
    null = demo_data(n=100, effect=0, n_features=100, seed=2)
    cv = repeated_cv(make_models(null), null.X, null.y, n_splits=5, n_repeats=2, seed=0)
    s = cv.summary.set_index("model")
    assert list(s.index) == ["DL", "Clinical", "Composite"]
    assert ((s["auc_lo"] <= 0.5) & (0.5 <= s["auc_hi"])).all(), s
    assert (s["auc_mean"] - 0.5).abs().max() < 0.15


def test_same_seed_same_models(data, fit):
    fitted, results = fit
    lasso_cache_clear()
    fitted2, results2 = fit_models(data, lasso={"cache": False})
    assert_same(learned(fitted), learned(fitted2))
    for m in results:
        for part in ("train", "test"):
            np.testing.assert_array_equal(results[m][part][1], results2[m][part][1])
    s = model_summary(fitted)
    assert s["settings"].str.match(r"n_neighbors=\d+, weights=uniform").all()
    assert (s["settings"].str.extract(r"n_neighbors=(\d+)")[0].astype(int) % 2 == 1).all()


def test_leakage_guard(data, fit):
    "Arbitrary test-set features and labels leave every fitted parameter and every training prediction unchanged."
    fitted, results = fit
    rng = np.random.default_rng(11)
    te = (data.split == "test").to_numpy()
    X, y = data.X.copy(), data.y.copy()
    X.loc[te, data.deep] = rng.normal(3, 5, (te.sum(), len(data.deep))).astype(np.float32)
    X.loc[te, data.numeric] = np.where(rng.random((te.sum(), len(data.numeric))) < 0.5, np.nan, 1e4)
    X.loc[te, "parity"] = rng.choice(["nulliparous", "unknown", None], te.sum())
    y[te] = 1 - y[te]
    lasso_cache_clear()
    fitted2, results2 = fit_models(ModelData(X, y, data.split, data.deep, data.numeric, data.categorical))
    assert lasso_cache_info()["misses"] == 1                 # the LASSO was refitted, not taken from the cache
    assert_same(learned(fitted), learned(fitted2))
    for m in results:
        np.testing.assert_array_equal(results[m]["train"][1], results2[m]["train"][1])
        np.testing.assert_array_equal(results[m]["train"][0], results2[m]["train"][0])
    assert not np.array_equal(results["Composite"]["test"][0], results2["Composite"]["test"][0])


def test_no_feature_selected(data):
    null = demo_data(n=120, effect=0, n_features=300, seed=3)
    with pytest.raises(NoFeaturesSelectedError, match="no deep feature carries signal"):
        make_model("DL", null.deep).fit(*null.part("train"))
    with pytest.warns(NoFeaturesSelected) as w:
        fitted, results = fit_models(null)
    assert list(fitted) == ["Clinical", "Composite"] and any("DL model was not fitted" in str(x.message) for x in w)
    comp, clin = fitted["Composite"].named_steps["classifier"], fitted["Clinical"].named_steps["classifier"]
    assert lasso_of(fitted["Composite"]).selected_ == [] and comp.n_features_in_ == clin.n_features_in_
    np.testing.assert_array_equal(results["Composite"]["test"][1], results["Clinical"]["test"][1])
    cv = repeated_cv(
        {"DL": make_model("DL", null.deep, lasso={"rule": "1se"})}, *null.part("train"), n_splits=3, n_repeats=2
    )
    empty = cv.folds[cv.folds["no_features"]]                 # such folds score everyone with the training prevalence
    assert len(empty) >= 3 and (empty["auc"] == 0.5).all() and (empty["deep_kept"] == 0).all()
    assert cv.summary["n_no_features"].tolist() == [len(empty)]


def test_a_class_smaller_than_the_folds(data):
    X, y = data.part("train")
    keep = np.r_[np.flatnonzero(y == 0), np.flatnonzero(y == 1)[:4]]
    with pytest.raises(PeRenalError, match="fewer than the 5 folds"):
        repeated_cv(make_models(data), X.iloc[keep], y.iloc[keep], n_splits=5)
    # inside a model the tuning folds shrink to the class size, so every fold holds both classes
    m = make_model("Clinical", numeric=data.numeric, categorical=data.categorical).fit(X.iloc[keep], y.iloc[keep])
    assert m.named_steps["classifier"].n_splits_ == 4
    cv = repeated_cv(make_models(data), X.iloc[keep], y.iloc[keep], n_splits=4, n_repeats=1)
    assert cv.summary["n_folds"].tolist() == [4, 4, 4]


def test_more_features_than_patients():
    d = demo_data(n=40, n_features=500, n_signal=20, seed=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoFeaturesSelected)
        fitted, results = fit_models(d)
    assert {"Clinical", "Composite"} <= set(fitted)
    for r in results.values():
        assert np.isfinite(r["test"][1]).all()
    assert fitted["Clinical"].named_steps["classifier"].best_params_["n_neighbors"] <= 19   # capped by fold size


def test_constant_columns(data):
    X = data.X.assign(deep_const=np.float32(1.0), clin_const=3.0)
    d = ModelData(X, data.y, data.split, data.deep + ["deep_const"], data.numeric + ["clin_const"], data.categorical)
    fitted, results = fit_models(d)
    assert "deep_const" not in lasso_of(fitted["Composite"]).selected_
    for r in results.values():
        assert np.isfinite(r["train"][1]).all() and np.isfinite(r["test"][1]).all()


def test_missing_clinical_values(data):
    X = data.X.copy()
    rng = np.random.default_rng(0)
    tr = (data.split == "train").to_numpy()
    X.loc[rng.random(len(X)) < 0.3, "bun_mmol_L"] = np.nan
    X.loc[rng.random(len(X)) < 0.2, "parity"] = np.nan
    X.loc[X.index[~tr][:2], data.clinical] = np.nan           # two test patients with no clinical value at all
    d = ModelData(X, data.y, data.split, data.deep, data.numeric, data.categorical)
    fitted, results = fit_models(d)
    num = fitted["Clinical"].named_steps["features"].named_transformers_["num"]
    np.testing.assert_array_equal(num.named_steps["impute"].statistics_, X.loc[tr, data.numeric].median().to_numpy())
    for r in results.values():
        assert np.isfinite(r["test"][1]).all()


def test_unseen_category_and_preprocessor(data):
    X, _ = data.part("train")
    pre = clinical_preprocessor(data.numeric, data.categorical).fit(X)
    new = X.head(2).copy()
    new["parity"] = ["twin pregnancy", np.nan]
    out = pre.transform(new)
    assert out[0, -2:].tolist() == [0.0, 0.0] and np.isfinite(out).all()
    with pytest.raises(PeRenalError, match="no clinical feature"):
        clinical_preprocessor([], [])


def test_model_data_checks(data):
    clin = data.X[data.clinical].assign(label=data.y, split=data.split).reset_index()
    deep = data.X[data.deep]
    with pytest.raises(PeRenalError, match="S0005"):
        model_data(deep.drop(index="S0005"), clin, data.numeric, data.categorical)
    with pytest.raises(PeRenalError, match="more than one row"):
        model_data(pd.concat([deep, deep.iloc[:1]]), clin, data.numeric, data.categorical)
    bad = deep.copy()
    bad.iloc[3, 4] = np.nan
    with pytest.raises(PeRenalError, match=r"S0004.*deep_0004|deep_0004.*re-extract"):
        model_data(bad, clin, data.numeric, data.categorical)
    with pytest.raises(PeRenalError, match="split_cohort"):
        model_data(deep, clin.drop(columns="split"), data.numeric, data.categorical)
    with pytest.raises(PeRenalError, match="both deep features and clinical"):
        model_data(deep.rename(columns={"deep_0000": "bun_mmol_L"}), clin, data.numeric, data.categorical)
    extra = pd.concat([deep, deep.iloc[:2].set_axis(["X1", "X2"])])   # features of patients not in the cohort: ignored
    assert model_data(extra, clin, data.numeric, data.categorical).X.shape == data.X.shape


def test_tuned_knn_equals_gridsearch():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((70, 4))
    y = (X[:, 0] + rng.standard_normal(70) > 0).astype(int)
    X = np.vstack([X, X[:10]])
    y = np.r_[y, y[:10]]  # duplicates: zero distances in distance weighting
    for w in (("uniform",), ("uniform", "distance")):
        t = TunedClassifier(weights=w, random_state=3).fit(X, y)
        folds = inner_folds(X, y, 5, 3)                     # copies of a patient kept in one fold
        g = GridSearchCV(KNeighborsClassifier(), knn_grid(min(len(tr) for tr, _ in folds), 25, w),
                         scoring="roc_auc", cv=folds).fit(X, y)
        assert t.best_params_ == g.best_params_
        np.testing.assert_allclose(t.cv_results_["mean_auc"], g.cv_results_["mean_test_score"], atol=1e-12)
        np.testing.assert_array_equal(t.predict_proba(X), g.best_estimator_.predict_proba(X))
    with pytest.raises(PeRenalError, match="unknown classifier"):
        TunedClassifier("boosting").fit(X, y)


def test_safe_scaler():
    assert SafeStandardScaler().fit_transform(np.zeros((3, 0))).shape == (3, 0)
    np.testing.assert_allclose(SafeStandardScaler().fit_transform(np.arange(6.0).reshape(3, 2)).mean(0), 0)


def test_internal_validation_reproducible_and_parallel():
    "The same seed gives the same folds and resamples in parallel (40 deep features: cheaper than the shared data)."
    data = demo_data(**(SMALL | dict(n_features=40)))
    X, y = data.part("train")
    models = make_models(data)
    a = repeated_cv(models, X, y, n_splits=3, n_repeats=1, seed=5)
    b = repeated_cv(models, X, y, n_splits=3, n_repeats=1, seed=5, n_jobs=2)
    pd.testing.assert_frame_equal(a.folds, b.folds)
    assert a.folds.groupby(["model", "repeat"])["n_test"].sum().eq(len(y)).all()   # every patient once per repeat
    o1 = bootstrap_optimism(models, X, y, n_boot=2, seed=2)
    o2 = bootstrap_optimism(models, X, y, n_boot=2, seed=2, n_jobs=2)
    pd.testing.assert_frame_equal(o1.summary, o2.summary)
    s = o1.summary.set_index("model")
    np.testing.assert_allclose(s["corrected"], s["apparent"] - s["optimism"])
    assert (s["optimism"] > 0).all() and (s["n_boot"] == 2).all()


def test_compare_classifiers(data, fit):
    _, results = fit
    res = compare_classifiers(data, classifiers=("knn", "logistic"))
    assert list(res) == [f"{m} ({c})" for c in ("knn", "logistic") for m in ("DL", "Clinical", "Composite")]
    np.testing.assert_array_equal(res["Composite (knn)"]["test"][1], results["Composite"]["test"][1])
    for clf in ("svm", "rf"):
        m = make_model("Clinical", numeric=data.numeric, categorical=data.categorical, classifier=clf).fit(
            *data.part("train")
        )
        p = m.predict_proba(data.part("test")[0])[:, 1]
        assert np.isfinite(p).all() and ((0 <= p) & (p <= 1)).all()


def test_demo_data_from_a_cohort_folder_matches(tmp_path):
    from pe_renal.synthetic import make_cohort
    root = make_cohort(tmp_path / "c", n=16, seed=5, n_jobs=1)
    a, b = demo_data(n=16, seed=5, n_features=32), demo_data(cohort_dir=root, seed=5, n_features=32)
    pd.testing.assert_frame_equal(a.X, b.X, check_dtype=False)
    pd.testing.assert_series_equal(a.y, b.y, check_dtype=False)
    assert a.split.tolist() == b.split.tolist() and (a.numeric, a.categorical) == (b.numeric, b.categorical)


@pytest.mark.slow
def test_paper_size_positive_control():
    "The default demo size (279 patients x 2048 simulated deep features): the composite model is clearly above chance."
    fitted, results = fit_models(demo_data())
    a = delong_ci(*results["Composite"]["test"])
    assert a.lo > 0.6, a


def test_knn_grid_is_the_odd_k_from_3_below_the_training_size():
    """The KNN tuning grid is every odd k from 3 to k_max (25), capped below the training patients of a fold: never
    k = 1 (a 0/1 vote share, no risk) nor an even k (tied votes), for each weighting asked."""
    assert knn_grid(100) == {"n_neighbors": [3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25], "weights": ["uniform"]}
    assert knn_grid(10)["n_neighbors"] == [3, 5, 7, 9] and knn_grid(9)["n_neighbors"] == [3, 5, 7]
    assert knn_grid(60, 11, ("uniform", "distance")) == {"n_neighbors": [3, 5, 7, 9, 11],
                                                         "weights": ["uniform", "distance"]}
