"""Known answers recomputed from the raw ingredients a run saves, written here by hand, never from the code's own
intermediate columns: the internal-validation interval from the out-of-fold scores (influence curve of LeDell, Petersen
& van der Laan 2015, plus the corrected repeated-CV variance), the Youden threshold from every repeat's out-of-fold
scores pooled, and SHAP variable and family importance from the SHAP matrix (a three-level categorical included)."""
import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats


def hand_auc(y, s):
    "Share of (case, control) pairs the score orders right, ties counting one half."
    cases, controls = s[y == 1], s[y == 0]
    return ((cases[:, None] > controls[None, :]) + 0.5 * (cases[:, None] == controls[None, :])).mean()


def hand_ic_msq(y, s, prev):
    """Mean square of the AUC's influence curve over a validation fold (LeDell et al. 2015): a case's term is
    (share of controls she outranks - AUC) / p, a control's (share of cases that outrank her - AUC) / (1 - p), ties
    counting one half. A constant score (a prevalence stand-in) counts as an uninformative one: (1/p + 1/(1-p)) / 12."""
    if s.max() == s.min():
        return (1 / prev + 1 / (1 - prev)) / 12
    auc, cases, controls = hand_auc(y, s), s[y == 1], s[y == 0]
    ic = [((controls < v).mean() + 0.5 * (controls == v).mean() - auc) / prev if yi == 1 else
          ((cases > v).mean() + 0.5 * (cases == v).mean() - auc) / (1 - prev) for yi, v in zip(y, s)]
    return float(np.mean(np.square(ic)))


def hand_youden(y, s):
    "The score threshold (positive if score >= it) of largest sensitivity + specificity; the middle of tied best ones."
    best, at = -np.inf, []
    for t in np.unique(s):
        j = (s[y == 1] >= t).mean() + (s[y == 0] < t).mean() - 1
        if j > best + 1e-12:
            best, at = j, [t]
        elif abs(j - best) <= 1e-12:
            at.append(t)
    return float(at[len(at) // 2])


@pytest.fixture(scope="module")
def saved(study_results):
    out = study_results[3]
    t = lambda n: pd.read_csv(out / "tables" / f"{n}.csv")
    return dict(run=json.loads((out / "run.json").read_text()), oof=t("threshold_oof_scores"),
                folds=t("internal_validation_cv_folds"), iv=t("internal_validation"), out=out)


def _fold_slices(oof, folds, model):
    "One model's out-of-fold rows cut into its folds (each repeat's folds in order, n_test rows each)."
    f = folds[folds["model"] == model].sort_values(["repeat", "fold"])
    o = oof[oof["model"] == model]
    for (r, k, n), start in zip(f[["repeat", "fold", "n_test"]].itertuples(index=False),
                                f.groupby("repeat")["n_test"].cumsum() - f["n_test"]):
        yield r, k, o[o["repeat"] == r].iloc[int(start):int(start) + int(n)]


def test_internal_validation_interval_from_the_out_of_fold_scores(saved):
    oof, folds, iv, cfg = saved["oof"], saved["folds"], saved["iv"], saved["run"]["config"]
    assert cfg["cv_repeats"] >= 2 and oof["repeat"].nunique() == cfg["cv_repeats"]
    n = saved["run"]["summary"]["split"]["train"]["patients"]
    prev = saved["run"]["summary"]["split"]["train"]["events"] / n
    primary = iv[iv["primary"] & iv["same_as"].isna()].set_index("model")
    assert len(primary) >= 2
    for model, row in primary.iterrows():
        aucs, msq = {}, {}
        for r, k, o in _fold_slices(oof, folds, model):
            y, s = o["label"].to_numpy(int), o["score"].to_numpy(float)
            assert o["patient_id"].is_unique and 0 < y.sum() < len(y)
            aucs[r, k], msq[r, k] = hand_auc(y, s), hand_ic_msq(y, s, prev)
        assert sum(len(o) for *_, o in _fold_slices(oof, folds, model)) == n * cfg["cv_repeats"]
        f = folds[folds["model"] == model].set_index(["repeat", "fold"])
        assert f["auc"].to_dict() == pytest.approx(aucs, abs=1e-12)      # the slices are the folds
        a = np.array(list(aucs.values()))
        auc, J = a.mean(), len(a)
        repeats = sorted({r for r, _ in msq})
        v_ic = np.mean([np.mean([m for (r, _), m in msq.items() if r == rep]) for rep in repeats]) / n
        v_nb = (1 / J + (f["n_test"] / f["n_train"]).mean()) * a.var(ddof=1)
        h, h_ic = stats.t.ppf(0.975, J - 1) * np.sqrt(v_ic + v_nb), stats.norm.ppf(0.975) * np.sqrt(v_ic)
        want = dict(auc=auc, lo=max(0, auc - h), hi=min(1, auc + h), lo_ic=max(0, auc - h_ic), hi_ic=min(1, auc + h_ic))
        assert row[list(want)].to_dict() == pytest.approx(want, abs=1e-9), model
        j = saved["run"]["internal_validation"][model]
        assert (j["auc"], j["lo"], j["hi"]) == pytest.approx((auc, want["lo"], want["hi"]), abs=1e-6)


def test_thresholds_are_youden_on_every_repeat_pooled(saved):
    "The threshold is chosen on the out-of-fold scores of all repeats together; here one repeat alone would differ."
    oof, th = saved["oof"], saved["run"]["model"]["thresholds"]
    assert oof["repeat"].nunique() >= 2
    used = oof[oof["chooses_threshold"]]
    differs = False
    for model, o in used.groupby("model"):
        assert th[model] == hand_youden(o["label"].to_numpy(int), o["score"].to_numpy(float)), model
        per_repeat = {hand_youden(g["label"].to_numpy(int), g["score"].to_numpy(float)) for _, g in o.groupby("repeat")}
        differs |= per_repeat != {th[model]}
    assert differs       # the pooled rule is told apart from a repeat's own threshold
    perf = pd.read_csv(saved["out"] / "tables" / "performance.csv")
    assert dict(zip(perf["model"], perf["threshold"])) == th


def test_shap_variable_and_family_importance_from_the_shap_matrix(study_results):
    "A variable's importance is the mean |sum of its one-hot columns|; a family's the mean |sum of its columns|."
    from conftest import PARITY_LEVELS
    out = study_results[3] / "tables"
    v = pd.read_csv(out / "shap_values.csv").set_index("patient_id")
    base, pred, v = v.pop("expected_value"), v.pop("prediction"), v
    np.testing.assert_allclose(base + v.sum(axis=1), pred, atol=1e-9)           # the values add up to the prediction
    levels = [c for c in v.columns if c.startswith("parity=")]
    assert sorted(levels) == sorted(f"parity={x}" for x in PARITY_LEVELS)
    var = pd.read_csv(out / "shap_importance_variable.csv").set_index("variable")
    net, summed = v[levels].sum(axis=1).abs().mean(), v[levels].abs().sum(axis=1).mean()
    assert var.loc["parity", "mean_abs_shap"] == pytest.approx(net, abs=1e-12)
    assert abs(net - summed) > 1e-4                                               # the two rules differ here
    for c in v.columns:
        if "=" not in c:
            assert var.loc[c, "mean_abs_shap"] == pytest.approx(v[c].abs().mean(), abs=1e-12), c
    assert set(var.index) == {c.split("=")[0] for c in v.columns}
    deep = [c for c in v.columns if c.startswith("deep_")]
    fam = pd.read_csv(out / "shap_importance_family.csv").set_index("family")
    for family, cols in (("deep", deep), ("clinical", [c for c in v.columns if c not in deep])):
        s = v[cols].sum(axis=1)
        assert fam.loc[family, "mean_abs_net_contribution"] == pytest.approx(s.abs().mean(), abs=1e-12)
        assert fam.loc[family, "mean_net_contribution"] == pytest.approx(s.mean(), abs=1e-12)
        assert fam.loc[family, "n_features"] == len(cols)
        assert fam.loc[family, "sum_of_feature_importance"] == pytest.approx(v[cols].abs().mean().sum(), abs=1e-12)
        assert set(var[var["family"] == family].index) == {c.split("=")[0] for c in cols}
    assert var["mean_abs_shap"].is_monotonic_decreasing
