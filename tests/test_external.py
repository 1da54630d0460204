"""`pe-renal validate` on the shared small study: a second synthetic site from the same generator looks like the first
(membership C <= 0.6, O:E intervals covering 1, slopes as at the first hospital); a site with another prevalence is
miscalibrated in the large and repaired by the intercept update; a scanner shift lowers the deep-feature model's AUC
and a case-mix shift is seen; development patients are refused as predict refuses them. The sites and their
validations are built once per session (tests/conftest.py, `external_sites`). The paper-sized same-site figures the
README quotes are those of `benchmarks/bench_same_site.py`."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pe_renal.core import PeRenalError
from pe_renal.external import validate_cohort
from pe_renal.synthetic import make_cohort
from conftest import EXTERNAL_N, cli, external_site, external_validated


def _run(study_results, cohort, out, **kw):
    return validate_cohort(study_results[3] / "model.skops", cohort, out, n_boot=50, cache=study_results[2].cache,
                           device="cpu", verbose=False, dpi=60, **kw)


@pytest.fixture(scope="module")
def sites(external_sites):
    """The two hospitals of tests/conftest.py (`external_sites`): the same one (n=80, seed 11) and one at 20%
    prevalence."""
    same, prev = external_sites
    return same.parent, same, prev


@pytest.fixture(scope="module")
def v_same(study_results, sites, tmp_path_factory, request):
    "The validation at the same hospital: read by its own test and, as the first scanner, by the scanner-shift test."
    return external_validated(tmp_path_factory, request, study_results, sites[1], "v_same")


@pytest.mark.slow
def test_same_site_looks_like_the_first(study_results, v_same):
    out = v_same
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
            assert (
                cal.loc[m, "slope_lo"] <= dev.loc[m, "slope_hi"] and dev.loc[m, "slope_lo"] <= cal.loc[m, "slope_hi"]
            ), m
    html = (out / "report.html").read_text()
    assert "SYNTHETIC DATA" in html and "Membership model" in html and "figures/calibration_validation.png" in html
    for f in ("calibration_validation", "roc_validation", "decision_curve_validation"):
        assert (out / "figures" / f"{f}.png").stat().st_size > 1000
    thr = pd.read_csv(out / "tables" / "threshold_metrics.csv")
    model = json.loads((study_results[3] / "run.json").read_text())["model"]["thresholds"]
    assert {m: thr.query("model == @m")["threshold"].iloc[0] for m in model} == pytest.approx(model)


@pytest.mark.slow
def test_shifted_prevalence_is_repaired_by_the_intercept_update(v_prev):
    out = v_prev
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


def test_cli_validate_needs_labels(study_results, tmp_path, capsys):
    "The command is there, and a cohort without labels is refused with a message, not a traceback."
    import shutil
    c = tmp_path / "nolabels"
    make_cohort(c, n=12, seed=21, n_jobs=1, site=dict(id_prefix="D"))
    (c / "cohort.toml").unlink()
    shutil.rmtree(c / "truth")
    code, out, err = cli(capsys, "validate", c, "--model", study_results[3] / "model.skops", "--out", tmp_path / "v",
                         "--boot", "10", "--device", "cpu", "--cache", study_results[2].cache)
    assert code == 2 and "outcome of every patient" in err and not (tmp_path / "v").exists(), err


@pytest.mark.slow
def test_saved_update_is_what_predict_applies(study_results, sites, v_prev, scanner_site, tmp_path, capsys):
    """`--save-updated logistic` writes updated_model.skops; predict on it gives validate's updated risks, says it is an
    updated model and on what, keeps the decisions, and calls its own fitting patients not external (and the women
    of another hospital, `scanner_site`, external)."""
    from pe_renal.predict import predict_cohort
    from pe_renal.validate import apply_update, calibration_summary
    _, same, prev = sites
    out = v_prev
    upd = pd.read_csv(out / "tables" / "updating.csv").query("update == 'logistic'").set_index("model")
    dev = pd.read_csv(out / "predictions.csv").set_index("patient_id")
    votes = json.loads((out / "validate.json").read_text())["saved_update"]["models"]
    with pytest.warns(UserWarning, match="patients this model was updated on"):
        pred, metrics = predict_cohort(out / "updated_model.skops", prev, cache=study_results[2].cache, device="cpu")
    said = capsys.readouterr().out
    y = pd.read_csv(prev / "truth" / "patients.csv")["label"]
    said_n = f"{len(y)} patients ({y.sum()} with preeclampsia) of prev"
    assert f"An updated model: logistic recalibration fitted on {said_n}" in said, said
    pred = pred.set_index("patient_id").loc[dev.index]
    for m in upd.index:
        mine = apply_update(dev[f"p_{m}"], dict(method="logistic", intercept=upd.loc[m, "a"], slope=upd.loc[m, "b"],
                                                 m=votes[m]["m"]))
        np.testing.assert_allclose(pred[f"p_{m}"], mine, rtol=1e-12)
        assert (pred[f"pred_{m}"] == dev[f"pred_{m}"]).all() and np.allclose(pred[f"p_{m}_as_developed"], dev[f"p_{m}"])
        s = calibration_summary(
            pred["label"], pred[f"p_{m}"], m=0, n_boot=0
        )  # its own fitting data: ideal by construction
        assert abs(s["citl"]) < 1e-6 and abs(s["slope"] - 1) < 1e-6, (m, s)
    assert metrics["validation"].str.startswith("NOT external").all()
    _, other = predict_cohort(
        out / "updated_model.skops", scanner_site, cache=study_results[2].cache, device="cpu", verbose=False
    )
    assert (other["validation"] == "external").all() and other["model_update"].str.contains("of prev").all()
    with pytest.raises(PeRenalError, match="already an updated model"):
        validate_cohort(out / "updated_model.skops", same, tmp_path / "v", save_updated="intercept", verbose=False)


@pytest.fixture(scope="module")
def scanner_site(tmp_path_factory, request):
    """The same women as `same` (seed 11) scanned with much coarser speckle and a strong blur, and with every clinical
    value 0.5 SD higher."""
    return external_site(tmp_path_factory, request, "scanner", real=False, n=EXTERNAL_N, seed=11,
                         site=dict(id_prefix="E", blur=5.0, speckle=3.0, case_mix=0.5))


@pytest.mark.slow
def test_scanner_shift_lowers_the_auc_and_case_mix_is_seen(study_results, v_same, scanner_site, tmp_path_factory,
                                                          request):
    """The same women (seed 11) scanned with coarser speckle and a blur, and with every clinical value 0.5 SD higher:
    the deep-feature model ranks them worse than the same women on the first scanner (paired DeLong), and the case mix
    is visible (membership C well above 0.5, standardised differences near 0.5); `same` is the control."""
    from pe_renal.evaluation import delong_test
    out = external_validated(tmp_path_factory, request, study_results, scanner_site, "v_scanner")
    base = pd.read_csv(v_same / "predictions.csv")           # the same women on the first scanner (validate's predict)
    cal = pd.read_csv(out / "tables" / "calibration.csv").set_index("model")
    new = pd.read_csv(out / "predictions.csv")
    base, new = (t.assign(n=t["patient_id"].str[1:]).set_index("n").sort_index() for t in (base, new))
    assert (new.index == base.index).all() and (new["label"] == base["label"]).all()   # the same women
    t = delong_test(base["label"], base["p_DL"], new["p_DL"])
    print(
        f"DL AUC first scanner {t.auc_a:.3f}, second {t.auc_b:.3f}, p = {t.p:.2g}; validation table "
            f"{cal.loc['DL', 'c']:.3f}"
    )
    assert t.auc_b < t.auc_a and t.p < 0.05, t
    meta = json.loads((out / "validate.json").read_text())
    assert meta["membership"]["lo"] > 0.6, meta["membership"]
    mix = pd.read_csv(out / "tables" / "case_mix.csv").dropna(subset=["SMD"]).set_index("variable")
    numeric = mix[mix["level"].str.startswith(("median", "mean"))]["SMD"].abs()
    assert numeric.median() > 0.25 and abs(mix.loc["outcome", "SMD"]) < 0.1, mix   # values shifted, prevalence not


SAME_SITE = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "same_site_validation.csv"


@pytest.mark.skipif(not SAME_SITE.is_file(), reason="benchmark results not in this checkout")
def test_quoted_same_site_figures_are_the_benchmarks():
    """The paper-sized same-site validation the README quotes (`benchmarks/bench_same_site.py`: the demo's model at 4
    second sites of 279 women from its own generator) is recomputed from the benchmark's rows: each interval's
    'covers 1' from its bounds, the counts and each model's range of slopes."""
    t = pd.read_csv(SAME_SITE)
    assert t.groupby("site_seed").size().eq(3).all() and (t.n == 279).all()
    assert (t.oe_covers_1 == ((t.oe_lo < 1) & (1 < t.oe_hi))).all()
    assert (t.slope_covers_1 == ((t.slope_lo < 1) & (1 < t.slope_hi))).all()
    sites, members = t.site_seed.nunique(), int((t.drop_duplicates("site_seed").membership_c <= 0.6).sum())
    r = t.groupby("model")["slope"].agg(["min", "max"])
    devcal = t.set_index("model")
    assert devcal.loc["Clinical", "slope_devcal_covers_1"].all()      # "repaired the clinical model at every site"
    below = int((devcal.loc["Composite", "slope_devcal_hi"] < 1).sum())
    quoted = [f"O:E covered 1 in {int(t.oe_covers_1.sum())} of {len(t)} intervals",
              f"the membership C was at most 0.6 at {members} of {sites} sites",
              f"the calibration slope covered 1 in {int(t.slope_covers_1.sum())} of {len(t)}",
              f"Clinical {r.loc['Clinical', 'min']:.2f} to {r.loc['Clinical', 'max']:.2f}",
              f"DL {r.loc['DL', 'min']:.2f} to {r.loc['DL', 'max']:.2f}",
              f"Composite {r.loc['Composite', 'min']:.2f} to {r.loc['Composite', 'max']:.2f}",
              f"pushed the composite one's slope below 1 at {below} of {sites}"]
    readme = " ".join((SAME_SITE.parents[2] / "README.md").read_text(encoding="utf-8").split())
    for q in quoted:
        assert q in readme, q
    nb = json.loads((SAME_SITE.parents[2] / "nbs" / "08f_external.ipynb").read_text())
    nb = " ".join("".join("".join(c["source"]) for c in nb["cells"]).split())
    assert f"slope {r.loc['Clinical', 'min']:.2f} to {r.loc['Clinical', 'max']:.2f} at four sites" in nb and sites == 4
    md = SAME_SITE.with_suffix(".md").read_text()
    assert f"calibration-slope intervals covering 1: {int(t.slope_covers_1.sum())} of {len(t)}" in md


def _site(rng, n, shift=0.0):
    "A hospital's clinical table: 20 numeric columns (the first shifted by `shift` SD), a categorical one, labels."
    d = pd.DataFrame({f"x{i}": rng.normal(shift if i == 0 else 0.0, 1, n) for i in range(20)})
    return d.assign(parity=rng.choice(["0", "1", "2+"], n), label=rng.integers(0, 2, n))


def test_membership_c_is_cross_validated_not_in_sample():
    """The membership C is out of fold: two hospitals drawn from one population (20 columns, 50 women each) give a C
    near 0.5 with a DeLong CI covering it (a model scored on the women it was fitted to would tell them apart, C about
    0.7); a real case-mix shift (one column moved 1.5 SD) gives a C well above 0.5 (positive control)."""
    from pe_renal.external import membership_c
    num = [f"x{i}" for i in range(20)]
    same = [membership_c(_site(rng, 50), _site(rng, 50), num, ["parity"])
            for rng in map(np.random.default_rng, range(6))]
    assert np.mean([m["c"] for m in same]) < 0.58
    assert sum(m["lo"] <= 0.5 <= m["hi"] for m in same) >= 5
    rng = np.random.default_rng(7)
    shifted = membership_c(_site(rng, 50), _site(rng, 50, shift=1.5), num, ["parity"])
    assert shifted["c"] > 0.75 and shifted["lo"] > 0.6
