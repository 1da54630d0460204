"""Every number a reader quotes, re-derived from the study's own saved files with independent code: a fault in any stage
(a threshold taken from the wrong patients, a metric on the wrong rows) fails here, not only a fault in one function."""
import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from pe_renal.model_file import load_model
from pe_renal.stages_eval import THRESHOLD_RULE

MODELS = ["DL", "Clinical", "Composite"]


def youden(y, s):
    "Youden threshold written out: the candidate score maximising sensitivity + specificity - 1 (middle of ties)."
    y, s = np.asarray(y, int), np.asarray(s, float)
    cands = np.unique(s)
    j = np.array([(s[y == 1] >= c).mean() + (s[y == 0] < c).mean() - 1 for c in cands])
    best = np.flatnonzero(np.abs(j - j.max()) <= 1e-12)
    return float(cands[best[len(best) // 2]])


@pytest.fixture(scope="module")
def saved(study_results):
    out = study_results[3]
    return dict(
        out=out, run=json.loads((out / "run.json").read_text()), pred=pd.read_csv(out / "predictions.csv"),
        perf=pd.read_csv(out / "tables" / "performance.csv"),
        oof=pd.read_csv(out / "tables" / "threshold_oof_scores.csv"), split=pd.read_csv(out / "split.csv"),
        model=load_model(out / "model.skops")
    )


def test_thresholds_come_from_the_out_of_fold_scores_of_the_training_patients(saved):
    oof, split, run, perf = saved["oof"], saved["split"], saved["run"], saved["perf"]
    train = set(split.loc[split["split"] == "train", "patient_id"].astype(str))
    assert set(oof["patient_id"].astype(str)) == train                      # training patients only, every one of them
    assert oof.groupby(["model", "repeat"])["patient_id"].apply(lambda p: p.is_unique and len(p) == len(train)).all()
    assert run["model"]["threshold_rule"] == THRESHOLD_RULE
    for m in MODELS:
        o = oof[oof["model"] == m]
        th = youden(o["label"], o["score"])
        assert run["model"]["thresholds"][m] == pytest.approx(th, abs=1e-12), m
        assert saved["model"]["thresholds"][m] == pytest.approx(th, abs=1e-12), m
        assert np.allclose(perf.loc[perf["model"] == m, "threshold"], th, rtol=0, atol=1e-12), m


def test_predicted_classes_follow_the_saved_thresholds(saved):
    pred, th = saved["pred"], saved["run"]["model"]["thresholds"]
    for m in MODELS:
        np.testing.assert_array_equal(
            pred[f"pred_{m}"].to_numpy(), (pred[f"p_{m}"] >= th[m]).astype(int).to_numpy(), err_msg=m
        )


def test_every_row_of_the_performance_table_is_re_derived_from_the_predictions(saved):
    pred, perf, th = saved["pred"], saved["perf"], saved["run"]["model"]["thresholds"]
    assert len(perf) == 2 * len(MODELS)
    for r in perf.itertuples():
        part = pred[pred["split"] == r.cohort]
        y, s = part["label"].to_numpy(int), part[f"p_{r.model}"].to_numpy(float)
        hit = s >= th[r.model]
        assert r.n == len(y) and r.n_positive == y.sum()
        assert r.auc == pytest.approx(roc_auc_score(y, s), abs=1e-12), (r.model, r.cohort)
        assert r.sensitivity == pytest.approx(hit[y == 1].mean(), abs=1e-12) and r.specificity == pytest.approx(
            (~hit[y == 0]).mean(), abs=1e-12
        )
        assert r.accuracy == pytest.approx((hit == (y == 1)).mean(), abs=1e-12)
        if r.cohort == "train":
            assert np.isnan([r.auc_lo, r.auc_hi, r.sensitivity_lo, r.specificity_hi]).all()  # apparent
        else:
            assert r.auc_lo <= r.auc <= r.auc_hi


def test_the_threshold_check_tells_the_rules_apart(saved):
    """Negative control: the Youden thresholds of the in-sample training scores or of the test patients are not the
    ones saved."""
    pred, th = saved["pred"], saved["run"]["model"]["thresholds"]
    other = {
        part: {
            m: youden(pred.loc[pred["split"] == part, "label"], pred.loc[pred["split"] == part, f"p_{m}"])
            for m in MODELS
        }
        for part in ("train", "test")
    }
    assert any(abs(other["train"][m] - th[m]) > 1e-9 for m in MODELS), (other, th)
    assert any(abs(other["test"][m] - th[m]) > 1e-9 for m in MODELS), (other, th)


def test_tables_readme_describes_every_csv_and_every_column(saved):
    """tables/README.txt: every CSV of the folder with what it holds, and a meaning for every column (or the note for
    patterned ones)."""
    text = (saved["out"] / "tables" / "README.txt").read_text(encoding="utf-8")
    from pe_renal.columns import _COLUMNS, _TABLES
    for p in sorted((saved["out"] / "tables").glob("*.csv")):
        assert f"{p.name}: " in text and f"{p.name}: (not described)" not in text, p.name
        what, cols, pattern = _TABLES[p.stem]
        for c in pd.read_csv(p, nrows=0).columns:
            c = "" if c.startswith("Unnamed") else c
            assert c in cols or c in _COLUMNS or pattern, (p.name, c)
