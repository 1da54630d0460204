"""No test patient touches any fitted step of the study: change every test patient's images and clinical values, run the
study again, and everything fitted (LASSO selection, internal validation, thresholds, the models themselves) is the same."""
import json
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pe_renal.predict import predict_cohort
from pe_renal.study import run_study


@pytest.mark.slow
def test_perturbing_the_test_patients_changes_nothing_that_was_fitted(study_results, tmp_path):
    d, cohort, cfg, out = study_results
    c2 = shutil.copytree(cohort, tmp_path / "cohort")
    split = pd.read_csv(out / "split.csv")
    test = set(split.loc[split["split"] == "test", "patient_id"].astype(str))
    clin = pd.read_csv(c2 / "clinical.csv")
    is_test = clin["patient_id"].astype(str).isin(test)
    num = [c for c in clin.columns if c not in ("patient_id",) and pd.api.types.is_float_dtype(clin[c])]
    assert len(num) >= 3 and is_test.sum() == len(test)
    clin.loc[is_test, num] = clin.loc[is_test, num] * 1.37 + 5               # every numeric clinical value of a test patient
    clin.to_csv(c2 / "clinical.csv", index=False)
    imgs = pd.read_csv(c2 / "images.csv")
    for p in imgs.loc[imgs["patient_id"].astype(str).isin(test), "path"]:  # and every image of a test patient, inverted
        a = np.asarray(Image.open(c2 / p)); Image.fromarray((255 - a).astype(a.dtype)).save(c2 / p)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_study(c2, tmp_path / "r", cfg, verbose=False)
    r = tmp_path / "r"
    for f in ("split.csv", "tables/lasso_coefficients.csv", "tables/internal_validation.csv", "tables/threshold_oof_scores.csv",
              "tables/models.csv", "tables/internal_validation_cv_folds.csv"):
        assert (out / f).read_bytes() == (r / f).read_bytes(), f
    a, b = (json.loads((x / "run.json").read_text()) for x in (out, r))
    assert a["model"]["thresholds"] == b["model"]["thresholds"] and a["internal_validation"] == b["internal_validation"]
    pa, pb = (pd.read_csv(x / "predictions.csv").set_index("patient_id") for x in (out, r))
    train = pa["split"] == "train"
    pd.testing.assert_frame_equal(pa[train], pb.loc[pa.index[train]])
    cols = [c for c in pa.columns if c.startswith("p_")]
    assert (pa.loc[~train, cols] != pb.loc[pa.index[~train], cols]).any().any()   # positive control: the test rows did change
    # the saved models are the same functions: both score the perturbed cohort alike
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sa, _ = predict_cohort(out / "model.skops", c2, cache=cfg.cache, verbose=False, allow_overlap=True)
        sb, _ = predict_cohort(r / "model.skops", c2, cache=cfg.cache, verbose=False, allow_overlap=True)
    pd.testing.assert_frame_equal(sa[["patient_id"] + cols], sb[["patient_id"] + cols], check_exact=True)
