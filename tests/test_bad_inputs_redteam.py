"""Bad inputs from a second red-team pass over the command line and the cohort contract: each test states the behaviour
wanted (a clear error naming the file, line, column or option, nothing lost), with the cases next to each fix."""
import re
import subprocess
import sys
import unicodedata
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pe_renal.core import PeRenalError, staged_dir
from pe_renal.data import load_cohort

from test_bad_inputs import cli, cohort_dir  # noqa: F401  (the same small cohort and in-process command)


def refused(capsys, *argv, says=()):
    code, out, err = cli(capsys, *argv)
    assert code == 2, (code, out, err)
    words = re.sub(r"\S*pytest-\S*/", "", err).lower()  # the test folders' own names do not count
    for s in says:
        assert s.lower() in words, f"{s!r} not in:\n{err}"
    return err


def edit(path: Path, fn):
    "Read a cohort CSV as text, change it with fn(df) -> df, write it back."
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    fn(df).to_csv(path, index=False)


# ---- the command itself ------------------------------------------------------------------------------------------

def test_python_dash_m_runs_the_cli():
    r = subprocess.run([sys.executable, "-m", "pe_renal.cli", "--version"], capture_output=True, text=True, timeout=120)
    assert "pe_renal" in r.stdout + r.stderr


# ---- clinical.csv ------------------------------------------------------------------------------------------------

def test_a_column_without_a_header_is_refused(capsys, cohort_dir):
    df = pd.read_csv(cohort_dir / "clinical.csv")
    df.sort_values("label").reset_index(drop=True).to_csv(
        cohort_dir / "clinical.csv"
    )  # index written, header cell empty
    err = refused(capsys, "check", cohort_dir, says=["clinical.csv"])
    assert "header" in err.lower() or "no name" in err.lower(), err


def test_a_row_with_fewer_fields_than_the_header_is_named(capsys, cohort_dir):
    lines = (cohort_dir / "clinical.csv").read_text().splitlines()
    lines[4] = lines[4].rsplit(",", 1)[0]                  # line 5 loses its last field
    (cohort_dir / "clinical.csv").write_text("\n".join(lines) + "\n")
    refused(capsys, "check", cohort_dir, says=["clinical.csv", "line 5"])


def test_semicolon_file_with_a_comma_in_a_column_name(capsys, cohort_dir):
    df = pd.read_csv(cohort_dir / "clinical.csv", dtype=str).rename(
        columns={"creatinine": "creatinine (umol/L, serum)"}
    )
    df.to_csv(cohort_dir / "clinical.csv", sep=";", index=False)
    code, out, err = cli(capsys, "check", cohort_dir)
    assert code == 0, err


def test_patient_ids_in_different_unicode_forms(capsys, cohort_dir):
    nfc, nfd = unicodedata.normalize("NFC", "José"), unicodedata.normalize("NFD", "José")
    edit(cohort_dir / "clinical.csv", lambda d: d.assign(patient_id=d["patient_id"].replace("P00", nfc)))
    edit(cohort_dir / "images.csv", lambda d: d.assign(patient_id=d["patient_id"].replace("P00", nfd)))
    code, out, err = cli(capsys, "check", cohort_dir)
    assert code == 0 or "unicode" in err.replace(str(cohort_dir), "").lower(), err


def test_an_identifier_like_text_column_is_warned_of(cohort_dir):
    edit(cohort_dir / "clinical.csv", lambda d: d.assign(mrn=[f"MRN{i:05d}" for i in range(len(d))]))
    with pytest.warns(UserWarning, match="mrn"):
        load_cohort(cohort_dir)


def test_many_columns_raise_no_pandas_performance_warning(cohort_dir):
    extra = pd.DataFrame(
        np.random.default_rng(0).normal(size=(20, 150)).round(2), columns=[f"x{j}" for j in range(150)]
    )
    df = pd.read_csv(cohort_dir / "clinical.csv", dtype=str)
    pd.concat([df, extra], axis=1).to_csv(cohort_dir / "clinical.csv", index=False)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        load_cohort(cohort_dir, check_images=False)
    assert not [x for x in w if "fragmented" in str(x.message)]


# ---- cohort.toml -------------------------------------------------------------------------------------------------

def test_a_feature_listed_twice_fails_check(capsys, cohort_dir):
    (cohort_dir / "cohort.toml").write_text('[clinical]\nfeatures = ["age", "age", "creatinine"]\n')
    refused(capsys, "check", cohort_dir, says=["cohort.toml", "'age'"])


def test_label_column_among_features_is_named_as_the_label(capsys, cohort_dir):
    (cohort_dir / "cohort.toml").write_text('[clinical]\nfeatures = ["label", "age"]\n')
    err = refused(capsys, "check", cohort_dir, says=["'label'"])
    assert "does not have" not in err, err


# ---- images.csv --------------------------------------------------------------------------------------------------

def test_a_roi_box_of_a_pixel_or_two_fails_check(capsys, cohort_dir):
    edit(cohort_dir / "images.csv", lambda d: d.assign(x0="0.1", y0="0.2", x1="0.8", y1="0.9"))
    refused(capsys, "check", cohort_dir, says=["images.csv", "line 2", "roi"])


def test_a_non_finite_roi_coordinate_gives_no_cohort_toml_advice(capsys, cohort_dir):
    edit(cohort_dir / "images.csv", lambda d: d.assign(x1=["inf"] + list(d["x1"][1:])))
    err = refused(capsys, "check", cohort_dir, says=["'x1'", "line 2"])
    assert "cohort.toml" not in err, err


def test_windows_backslash_paths(capsys, cohort_dir):
    edit(cohort_dir / "images.csv", lambda d: d.assign(path=d["path"].str.replace("/", "\\", regex=False)))
    code, out, err = cli(capsys, "check", cohort_dir)
    assert code == 0 or "backslash" in err.replace(str(cohort_dir), "").lower(), err   # the folder's name has the word


def test_a_very_large_image_is_named_in_its_warning(cohort_dir, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1500)      # the images are 40x50 = 2000 pixels: over, but under 2x
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        load_cohort(cohort_dir)
    big = [str(x.message) for x in w if "pixels" in str(x.message)]
    assert big and all("p00_0.png" in m or "images/" in m for m in big[:1]), big


# ---- outputs -----------------------------------------------------------------------------------------------------

def test_an_existing_empty_results_folder_is_filled(tmp_path):
    out = tmp_path / "results"
    out.mkdir()
    with staged_dir(out) as tmp:
        (tmp / "run.json").write_text("{}")
    assert (out / "run.json").is_file()


def test_an_empty_weights_option_is_named(capsys, cohort_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    refused(capsys, "features", cohort_dir, "--out", tmp_path / "f.csv", "--backbone", "resnet18", "--weights", "",
            says=["--weights"])


# ---- model files -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("info", [{}, {"numeric": [], "categorical": [], "weights": None, "backbone": "resnet18"}])
def test_a_model_file_with_malformed_info_is_refused(capsys, cohort_dir, tmp_path, info):
    import skops.io as sio
    from pe_renal.model_file import MODEL_FORMAT
    model = tmp_path / "model.skops"
    model.write_bytes(sio.dumps({"format": MODEL_FORMAT, "models": {}, "thresholds": {}, "info": info}))
    refused(
        capsys, "predict", cohort_dir, "--model", model, "--out", tmp_path / "p.csv", says=["model.skops", "damaged"]
    )


# ---- report ------------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_report_names_a_damaged_figure(capsys, study_results, tmp_path):
    import shutil

    res = tmp_path / "results"
    shutil.copytree(study_results[3], res)
    (res / "figures" / "roc_test.png").write_bytes(b"")
    refused(capsys, "report", res, says=["roc_test.png"])


@pytest.mark.slow
def test_report_names_report_html_when_it_cannot_be_written(capsys, study_results, tmp_path):
    import shutil

    res = tmp_path / "results"
    shutil.copytree(study_results[3], res)
    (res / "report.html").unlink()
    (res / "report.html").mkdir()
    err = refused(capsys, "report", res, says=["report.html"])
    assert ".tmp" not in err, err


# ---- evaluation --------------------------------------------------------------------------------------------------

def test_threshold_metrics_undefined_everywhere_raise_no_numpy_warning():
    from pe_renal.evaluation import threshold_metrics

    y = np.array([0, 1] * 10)
    s = np.linspace(0, 0.5, 20)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        out = threshold_metrics(y, s, threshold=0.9, n_boot=50)
    assert np.isnan(out.loc["ppv", "value"]) if "ppv" in out.index else True


@pytest.mark.slow
def test_report_says_which_figures_are_missing(capsys, study_results, tmp_path):
    import html as h
    import shutil

    res = tmp_path / "results"
    shutil.copytree(study_results[3], res)
    assert cli(capsys, "report", res)[0] == 0
    page = (res / "report.html").read_text(encoding="utf-8")
    assert "Missing from this results folder" not in page                       # complete: nothing said
    (res / "figures" / "roc_test.png").unlink()
    code, out, err = cli(capsys, "report", res)
    assert code == 0 and "figures/roc_test.png" in err
    text = " ".join(h.unescape(re.sub(r"<[^>]+>", " ", (res / "report.html").read_text(encoding="utf-8"))).split())
    assert "Missing from this results folder: figures/roc_test.png." in text


def test_check_says_test_size_is_not_used_with_an_imposed_split(capsys, cohort_dir):
    edit(
        cohort_dir / "clinical.csv",
        lambda df: df.assign(split=["train" if i % 10 < 7 else "test" for i in range(len(df))]),
    )
    code, out, err = cli(capsys, "check", cohort_dir, "--test-size", "0.5")
    assert code == 0 and "--test-size is not used" in err
    code, out, err = cli(capsys, "check", cohort_dir)
    assert code == 0 and "--test-size" not in err


# ---- the fixes above, from the other side: what is still accepted, and the cases next to them -----------------------

def test_trailing_empty_columns_are_dropped_unnamed_columns_with_values_refused(cohort_dir):
    """Excel's empty trailing columns (',,' on every line) are dropped without a word; an unnamed column with values is
    not."""
    want = load_cohort(cohort_dir, check_images=False)
    for name in ("clinical.csv", "images.csv"):
        p = cohort_dir / name
        p.write_text("".join(l + ",,\n" for l in p.read_text().splitlines()))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = load_cohort(cohort_dir, check_images=False)
    assert got.features == want.features and list(got.clinical.columns) == list(want.clinical.columns)
    pd.testing.assert_frame_equal(got.clinical, want.clinical)
    lines = (cohort_dir / "clinical.csv").read_text().splitlines()  # a value in the 2nd empty column
    lines[3] += "7"
    (cohort_dir / "clinical.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(PeRenalError, match=r"column 7 of the header line has no name") as e:
        load_cohort(cohort_dir)
    assert "Unnamed" not in str(e.value) and "'7'" in str(e.value)


def test_a_row_with_more_fields_than_the_header_is_named(cohort_dir):
    lines = (cohort_dir / "clinical.csv").read_text().splitlines()
    lines[2] += ",9"
    (cohort_dir / "clinical.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(PeRenalError, match=r"clinical.csv: .*\n  - line 3: 6 field\(s\), the header line has 5"):
        load_cohort(cohort_dir)


def test_semicolon_file_with_decimal_commas_and_a_comma_in_a_name_reads_the_numbers(cohort_dir):
    want = load_cohort(cohort_dir, check_images=False).clinical["creatinine"].to_numpy()
    df = pd.read_csv(cohort_dir / "clinical.csv", dtype=str).rename(
        columns={"creatinine": "creatinine (umol/L, serum)"}
    )
    df["creatinine (umol/L, serum)"] = df["creatinine (umol/L, serum)"].str.replace(".", ",", regex=False)
    df.to_csv(cohort_dir / "clinical.csv", sep=";", index=False)
    got = load_cohort(cohort_dir, check_images=False).clinical["creatinine (umol/L, serum)"].to_numpy()
    np.testing.assert_array_equal(got, want)


def test_an_image_file_named_in_the_other_unicode_form_is_found(cohort_dir):
    """images.csv says Léon in NFC; the file on disk is named in NFD (as macOS writes it): found. A missing one is
    still named."""
    nfc, nfd = (unicodedata.normalize(f, "images/Léon.png") for f in ("NFC", "NFD"))
    (cohort_dir / "images" / "p00_0.png").rename(cohort_dir / nfd)
    edit(cohort_dir / "images.csv", lambda d: d.assign(path=[nfc] + list(d["path"][1:])))
    c = load_cohort(cohort_dir)
    assert c.images["abspath"].iloc[0] == str(cohort_dir / nfd) and c.image(0).shape == (36, 46)
    (cohort_dir / nfd).unlink()
    with pytest.raises(PeRenalError, match=r"line 2: image 'images/Léon.png' not found"):
        load_cohort(cohort_dir)


def test_a_one_pixel_roi_mask_is_refused_an_8_pixel_one_accepted(cohort_dir):
    m = np.zeros((40, 50), np.uint8)
    m[10, 20] = 255
    Image.fromarray(m).save(cohort_dir / "images" / "m.png")
    edit(
        cohort_dir / "images.csv",
        lambda d: d.drop(columns=["x0", "y0", "x1", "y1"]).assign(mask=["images/m.png"] + [""] * (len(d) - 1)),
    )
    with pytest.raises(PeRenalError, match=r"line 2: .*mask's region is 1x1 pixels, smaller than the minimum of 8x8"):
        load_cohort(cohort_dir)
    m[10:18, 20:28] = 255
    Image.fromarray(m).save(cohort_dir / "images" / "m.png")
    assert load_cohort(cohort_dir).image(0).shape == (8, 8)


def test_many_clinical_predictors_for_few_patients_are_warned_of(cohort_dir):
    "21 clinical columns for the 14 training patients of 20: a warning; the 3 of the small cohort give none."
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_cohort(cohort_dir, check_images=False)
    extra = pd.DataFrame(np.random.default_rng(0).normal(size=(20, 18)).round(2), columns=[f"x{j}" for j in range(18)])
    df = pd.read_csv(cohort_dir / "clinical.csv", dtype=str)
    pd.concat([df, extra], axis=1).to_csv(cohort_dir / "clinical.csv", index=False)
    with pytest.warns(UserWarning, match="21 clinical predictors for about 14 training patients"):
        load_cohort(cohort_dir, check_images=False)


def test_patient_ids_that_differ_only_in_case_are_warned_of(cohort_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ids = load_cohort(cohort_dir, check_images=False).clinical["patient_id"].tolist()   # distinct ids: no warning
    edit(cohort_dir / "clinical.csv", lambda d: d.assign(patient_id=[ids[0].lower()] + list(d["patient_id"][1:])))
    edit(cohort_dir / "images.csv", lambda d: d.assign(patient_id=d["patient_id"].replace(ids[0], ids[0].lower())))
    edit(
        cohort_dir / "clinical.csv",
        lambda d: d.assign(patient_id=[d["patient_id"][0], ids[0].upper()] + list(d["patient_id"][2:])),
    )
    edit(cohort_dir / "images.csv", lambda d: d.assign(patient_id=d["patient_id"].replace(ids[1], ids[0].upper())))
    with pytest.warns(
        UserWarning,
        match=rf"differ only in upper/lower case.*'{ids[0].lower()}' and '{ids[0].upper()}'|"
        rf"differ only in upper/lower case.*'{ids[0].upper()}' and '{ids[0].lower()}'",
    ):
        load_cohort(cohort_dir, check_images=False)


def test_excels_sep_line_is_named(capsys, cohort_dir):
    p = cohort_dir / "clinical.csv"
    p.write_text("sep=,\n" + p.read_text())
    refused(capsys, "check", cohort_dir, says=["clinical.csv", "'sep=,'", "delete that line"])


def test_a_multi_frame_image_is_said_to_be_read_at_its_first_frame(tmp_path):
    from pe_renal.images import read_image
    rng = np.random.default_rng(0)
    frames = [Image.fromarray((rng.random((40, 40)) * 255).astype(np.uint8)) for _ in range(3)]
    frames[0].save(tmp_path / "cine.gif", save_all=True, append_images=frames[1:])
    frames[0].save(tmp_path / "still.gif")
    with pytest.warns(UserWarning, match=r"cine.gif: an image of 3 frames .* the first frame is analysed"):
        first = read_image(tmp_path / "cine.gif")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(
            read_image(tmp_path / "still.gif"), first
        )  # the first frame, and no word for a still


def test_cohort_toml_that_is_a_folder_is_named(capsys, cohort_dir):
    (cohort_dir / "cohort.toml").mkdir()
    refused(capsys, "check", cohort_dir, says=["cohort.toml", "a folder, not a file"])


def test_synth_never_writes_inside_a_cohort(capsys, cohort_dir):
    before = sorted(p.relative_to(cohort_dir) for p in cohort_dir.rglob("*"))
    refused(
        capsys,
        "synth",
        "--out",
        cohort_dir / "sub",
        "--n",
        20,
        says=["inside the cohort folder", "never written into an input"],
    )
    assert sorted(p.relative_to(cohort_dir) for p in cohort_dir.rglob("*")) == before
