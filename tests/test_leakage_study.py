"""No test patient touches any fitted step of the study: change every test patient's images and clinical values, run the
study again, and everything fitted (fine-tuned weights, LASSO selection, internal validation, thresholds, the models
themselves) is the same."""
import dataclasses
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pe_renal.study import StudyConfig, run_study
from test_finetune_study import tuned  # noqa: F401  (the fine-tuned study, built once per session)

FITTED = (
    "split.csv", "tables/lasso_coefficients.csv", "tables/internal_validation.csv", "tables/threshold_oof_scores.csv",
    "tables/models.csv", "tables/internal_validation_cv_folds.csv"
)


def perturbed_copy(cohort:Path, results:Path, to:Path)->Path:
    """A copy of the cohort in which every test patient (split.csv of results) has other clinical values and inverted
    images."""
    c2 = shutil.copytree(cohort, to)
    split = pd.read_csv(results / "split.csv")
    test = set(split.loc[split["split"] == "test", "patient_id"].astype(str))
    clin = pd.read_csv(c2 / "clinical.csv")
    is_test = clin["patient_id"].astype(str).isin(test)
    num = [c for c in clin.columns if c not in ("patient_id",) and pd.api.types.is_float_dtype(clin[c])]
    assert len(num) >= 3 and is_test.sum() == len(test) > 0
    clin.loc[is_test, num] = clin.loc[is_test, num] * 1.37 + 5  # every numeric clinical value of a test patient
    clin.to_csv(c2 / "clinical.csv", index=False)
    imgs = pd.read_csv(c2 / "images.csv")
    for p in imgs.loc[imgs["patient_id"].astype(str).isin(test), "path"]:  # and every image of a test patient, inverted
        a = np.asarray(Image.open(c2 / p))
        Image.fromarray((255 - a).astype(a.dtype)).save(c2 / p)
    return c2


def assert_same_fit(out:Path, r:Path):
    """Everything fitted is byte-identical between two results folders; the training rows of the predictions too, the
    test rows not."""
    for f in FITTED:
        assert (out / f).read_bytes() == (r / f).read_bytes(), f
    a, b = (json.loads((x / "run.json").read_text()) for x in (out, r))
    assert a["model"]["thresholds"] == b["model"]["thresholds"] and a["internal_validation"] == b["internal_validation"]
    pa, pb = (pd.read_csv(x / "predictions.csv").set_index("patient_id") for x in (out, r))
    train = pa["split"] == "train"
    pd.testing.assert_frame_equal(pa[train], pb.loc[pa.index[train]])
    cols = [c for c in pa.columns if c.startswith("p_")]
    assert (
        (pa.loc[~train, cols] != pb.loc[pa.index[~train], cols]).any().any()
    )  # positive control: the test rows did change
    return a, b


@pytest.mark.slow
def test_perturbing_the_test_patients_changes_nothing_that_was_fitted(study_results, tmp_path):
    from pe_renal.predict import predict_cohort
    d, cohort, cfg, out = study_results
    c2 = perturbed_copy(cohort, out, tmp_path / "cohort")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_study(c2, tmp_path / "r", cfg, verbose=False)
    r = tmp_path / "r"
    assert_same_fit(out, r)
    cols = [c for c in pd.read_csv(out / "predictions.csv", nrows=0).columns if c.startswith("p_")]
    # the saved models are the same functions: both score the perturbed cohort alike
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sa, _ = predict_cohort(out / "model.skops", c2, cache=cfg.cache, verbose=False, allow_overlap=True)
        sb, _ = predict_cohort(r / "model.skops", c2, cache=cfg.cache, verbose=False, allow_overlap=True)
    pd.testing.assert_frame_equal(sa[["patient_id"] + cols], sb[["patient_id"] + cols], check_exact=True)


@pytest.mark.slow
@pytest.mark.parametrize("tuned", ["fp32"], indirect=True)
def test_perturbing_the_test_patients_changes_no_fine_tuned_weight(tuned, tmp_path, monkeypatch):
    """A fine-tuned study (backbone fine-tuned on the training patients, `finetune="last"`), run again from its own
    run.json
    config on a cohort whose test patients have other images and clinical values: the fine-tuned weights file is
    bit-identical (and so its SHA-256 in run.json), the fine-tuning history too (but for its timings), and so is
    everything
    fitted after it."""
    import pe_renal.features as F
    d, cohort, out = tuned
    saved = json.loads((out / "run.json").read_text())["config"]
    cfg = StudyConfig(**{f.name: saved[f.name] for f in dataclasses.fields(StudyConfig) if f.name in saved})
    assert cfg.finetune == "last"
    c2 = perturbed_copy(cohort, out, tmp_path / "cohort")
    monkeypatch.setattr(F, "cpu_bf16_kernels", lambda: False)               # the precision the fp32 run was made with
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_study(c2, tmp_path / "r", cfg, verbose=False)
    r = tmp_path / "r"
    a, b = (json.loads((x / "run.json").read_text()) for x in (out, r))
    fa, fb = a["finetune"], b["finetune"]
    assert fa["file"] == fb["file"] and (out / fa["file"]).read_bytes() == (r / fb["file"]).read_bytes()
    assert fa["sha256"] == fb["sha256"] and a["weights"] == b["weights"]
    ha, hb = (pd.read_csv(x / "tables" / "finetune_history.csv").drop(columns="seconds") for x in (out, r))
    pd.testing.assert_frame_equal(ha, hb, check_exact=True)  # every epoch's losses and AUC (not its time)
    assert a["input_sha256"] != b["input_sha256"]  # the inputs did differ
    assert_same_fit(out, r)  # and so is everything fitted after fine-tuning
