"""`predict` on new patients: cohorts with one label value or unseen categories are scored with a warning, columns the
model never uses are ignored but those it needs are named, ROI-crop models warn about images without one, and a model
file with malformed info is refused as damaged. (Patients the model was developed on: tests/test_overlap.py.)"""
import pandas as pd
import pytest

from conftest import cli, first_patients, refused


@pytest.fixture(scope="module")
def fresh(new_patients, tmp_path_factory):
    "16 of the session's new women (tests/conftest.py), copied once for the tests below: each edits its own copy."
    return first_patients(new_patients, tmp_path_factory.mktemp("fresh") / "new5", 16)


def _new(fresh, tmp_path):
    "A copy of `fresh` (the same images, so their features come from the cache after the first predict)."
    import shutil
    return shutil.copytree(fresh, tmp_path / fresh.name)


def test_predict_scores_a_cohort_whose_labels_are_all_one_value(capsys, model, fresh, tmp_path):
    d, m = model
    new = _new(fresh, tmp_path)
    clin = pd.read_csv(new / "clinical.csv", dtype=str)
    clin["group"] = "preeclampsia"
    clin.to_csv(new / "clinical.csv", index=False)
    code, out, err = cli(capsys, "predict", new, "--model", m, "--out", tmp_path / "p.csv", "--cache", d / "cache")
    assert code == 0, err
    assert "16 patients scored" in out and "same label" in err and "both classes" in err
    p = pd.read_csv(tmp_path / "p.csv")
    assert len(p) == 16 and (p["label"] == 1).all() and not (tmp_path / "p_metrics.csv").exists()


def test_predict_warns_about_categories_never_seen_in_training(capsys, model, fresh, tmp_path):
    d, m = model
    new = _new(fresh, tmp_path)
    clin = pd.read_csv(new / "clinical.csv", dtype=str)
    col = "parity"
    assert col in clin, clin.columns
    seen = sorted(clin[col].dropna().unique())
    clin.loc[:3, col] = "grand multiparous"               # 4 of 16 patients
    clin.to_csv(new / "clinical.csv", index=False)
    code, out, err = cli(capsys, "predict", new, "--model", m, "--out", tmp_path / "p.csv", "--cache", d / "cache")
    assert code == 0, err
    assert "'parity'" in err and "'grand multiparous'" in err and "4 of 16 patients, 25%" in err
    # a column with no value the model knows (recoded 0/1) is refused
    clin[col] = (clin[col] == seen[0]).astype(int).astype(str)
    clin.to_csv(new / "clinical.csv", index=False)
    refused(capsys, "predict", new, "--model", m, "--out", tmp_path / "q.csv", "--cache", d / "cache",
            says=["'parity'", "none of the values the model was trained with"])
    assert not (tmp_path / "q.csv").exists()


def test_predict_ignores_columns_the_model_never_uses_but_not_those_it_needs(capsys, study_results, fresh, tmp_path):
    _, cohort, cfg, out = study_results
    new = _new(fresh, tmp_path)
    df = pd.read_csv(new / "clinical.csv")
    used = load_model_columns(out)
    unused = [c for c in df.columns if c not in used + ["patient_id", "group", "label"]]
    assert unused
    df[unused[0]] = None
    df["free_text_notes"] = "see chart"
    df["empty_extra"] = None
    df.to_csv(new / "clinical.csv", index=False)
    code, outp, err = cli(
        capsys, "predict", new, "--model", out / "model.skops", "--out", tmp_path / "p.csv", "--cache", cfg.cache
    )
    assert code == 0 and (tmp_path / "p.csv").is_file(), err
    df[used[0]] = None  # a column the model uses, empty: refused by name
    df.to_csv(new / "clinical.csv", index=False)
    refused(capsys, "predict", new, "--model", out / "model.skops", "--out", tmp_path / "q.csv", "--cache", cfg.cache,
            says=[used[0], "empty"])


def load_model_columns(out):
    from pe_renal.model_file import load_model
    info = load_model(out / "model.skops")["info"]
    return list(info["numeric"]) + list(info["categorical"])


def test_predict_warns_when_the_model_was_trained_on_roi_crops_and_the_images_have_none(capsys, model, fresh, tmp_path):
    "The model file says how many training images had an ROI; new images without one are scored, with a warning."
    from pe_renal.model_file import load_model
    d, m = model
    roi = load_model(m)["info"]["development"]["roi"]
    assert roi["box"] + roi["mask"] > roi["none"], roi        # the synthetic cohort's training images have boxes
    new = first_patients(fresh, tmp_path / "new", 4)          # 4 women: their images without boxes are new features
    code, out, err = cli(capsys, "predict", new, "--model", m, "--out", tmp_path / "p.csv", "--cache", d / "cache")
    assert code == 0 and "ROI crops" not in err, err          # boxes given: no warning (negative control)
    imgs = pd.read_csv(new / "images.csv")
    imgs.drop(columns=["x0", "y0", "x1", "y1"]).to_csv(new / "images.csv", index=False)
    code, out, err = cli(capsys, "predict", new, "--model", m, "--out", tmp_path / "q.csv", "--cache", d / "cache")
    assert (
        code == 0 and "developed on ROI crops" in err and f"{len(imgs)} of {len(imgs)} images here have none" in err
    ), err
    assert (tmp_path / "q.csv").is_file()


@pytest.mark.parametrize("info", [{}, {"numeric": [], "categorical": [], "weights": None, "backbone": "resnet18"}])
def test_a_model_file_with_malformed_info_is_refused(capsys, cohort_dir, tmp_path, info):
    import skops.io as sio
    from pe_renal.model_file import MODEL_FORMAT
    model = tmp_path / "model.skops"
    model.write_bytes(sio.dumps({"format": MODEL_FORMAT, "models": {}, "thresholds": {}, "info": info}))
    refused(
        capsys, "predict", cohort_dir, "--model", model, "--out", tmp_path / "p.csv", says=["model.skops", "damaged"]
    )
