"""`pe-renal validate` on the shared small study: a second synthetic site from the same generator looks like the first
(membership C <= 0.6, O:E intervals covering 1, slopes as at the first hospital); a site with another prevalence is miscalibrated in the large
and repaired by the intercept update; development patients are refused as predict refuses them."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pe_renal.core import PeRenalError
from pe_renal.external import validate_cohort
from pe_renal.synthetic import make_cohort
from conftest import like_a_real_cohort

PE_RENAL = str(Path(sys.executable).with_name("pe-renal"))


@pytest.fixture(scope="module")
def sites(study_results, tmp_path_factory):
    "Two more hospitals drawn like the study's cohort (n=70, seed 0, delta 2.5): the same one, and one at 20% prevalence."
    d = tmp_path_factory.mktemp("sites")
    same = make_cohort(d / "same", n=160, seed=11, delta=2.5, n_jobs=2, site=dict(id_prefix="B"))
    prev = make_cohort(d / "prev", n=160, seed=12, delta=2.5, n_pe=32, n_jobs=2, site=dict(id_prefix="C"))
    for c in (same, prev): like_a_real_cohort(c)     # as the study's cohort (three parity levels, a kept outcome column)
    return d, same, prev


def _run(study_results, cohort, out, **kw):
    return validate_cohort(study_results[3] / "model.skops", cohort, out, n_boot=50, cache=study_results[2].cache,
                           device="cpu", verbose=False, dpi=60, **kw)


@pytest.mark.slow
def test_same_site_looks_like_the_first(study_results, sites):
    d, same, _ = sites
    out = _run(study_results, same, d / "v_same")
    cal = pd.read_csv(out / "tables" / "calibration.csv").set_index("model")
    meta = json.loads((out / "validate.json").read_text())
    assert meta["development_cohort"] and meta["membership"]["c"] <= 0.6
    assert ((cal.oe_lo < 1) & (1 < cal.oe_hi)).all(), cal
    # every model still ranks the new patients (slope above 0), and its slope is that of the development hospital's own
    # held-out patients where that one is finite (a small test set may be separated: slope +inf): the intervals overlap
    # (a KNN's Laplace-smoothed vote shares are too modest, slope > 1, at both hospitals alike)
    assert (cal.slope_lo > 0).all(), cal
    dev = pd.read_csv(study_results[3] / "tables" / "calibration.csv").query("cohort == 'test'").set_index("model")
    for m in cal.index:
        if np.isfinite(dev.loc[m, ["slope_lo", "slope_hi"]].astype(float)).all():
            assert cal.loc[m, "slope_lo"] <= dev.loc[m, "slope_hi"] and dev.loc[m, "slope_lo"] <= cal.loc[m, "slope_hi"], m
    html = (out / "report.html").read_text()
    assert "SYNTHETIC DATA" in html and "Membership model" in html and "figures/calibration_validation.png" in html
    for f in ("calibration_validation", "roc_validation", "decision_curve_validation"):
        assert (out / "figures" / f"{f}.png").stat().st_size > 1000
    thr = pd.read_csv(out / "tables" / "threshold_metrics.csv")
    model = json.loads((study_results[3] / "run.json").read_text())["model"]["thresholds"]
    assert {m: thr.query("model == @m")["threshold"].iloc[0] for m in model} == pytest.approx(model)


@pytest.mark.slow
def test_shifted_prevalence_is_repaired_by_the_intercept_update(study_results, sites):
    d, _, prev = sites
    out = _run(study_results, prev, d / "v_prev")
    cal = pd.read_csv(out / "tables" / "calibration.csv").set_index("model")
    r = cal.loc["Clinical"]
    assert r.citl_hi < 0, r                               # 20% instead of 54%: the risks are too high
    upd = pd.read_csv(out / "tables" / "updating.csv").query("model == 'Clinical'").set_index("update")
    assert r.citl_lo < upd.loc["none", "citl_corrected"] < r.citl_hi
    assert abs(upd.loc["intercept", "citl_corrected"]) < (r.citl_hi - r.citl_lo) / 2   # back within its CI of 0


def test_development_patients_are_refused(study_results, tmp_path):
    with pytest.raises(PeRenalError, match="not external validation"):
        _run(study_results, study_results[1], tmp_path / "v")
    assert not (tmp_path / "v").exists()


@pytest.mark.slow
def test_cli_validate_needs_labels(study_results, tmp_path):
    "The command is there, and a cohort without labels is refused with a message, not a traceback."
    import shutil
    c = tmp_path / "nolabels"
    make_cohort(c, n=12, seed=21, n_jobs=1, site=dict(id_prefix="D"))
    (c / "cohort.toml").unlink()
    shutil.rmtree(c / "truth")
    r = subprocess.run([PE_RENAL, "validate", str(c), "--model", str(study_results[3] / "model.skops"),
                        "--out", str(tmp_path / "v"), "--boot", "10", "--device", "cpu",
                        "--cache", str(study_results[2].cache)], capture_output=True, text=True)
    assert r.returncode != 0 and "outcome of every patient" in r.stderr and "Traceback" not in r.stderr, r.stderr
