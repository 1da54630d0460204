"""Every kind of bad cohort input raises one CohortError whose message names the culprit and says what to do,
and nothing inside the cohort folder is ever written."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pe_renal.core import CohortError
from pe_renal.data import load_cohort
from pe_renal.split import split_cohort

from conftest import tree_state, write_cohort

PE_RENAL = str(Path(sys.executable).with_name("pe-renal"))


@pytest.fixture
def cohort_dir(tmp_path) -> Path:
    "The 12-patient cohort that the counts and line numbers below are written for (tests/conftest.py's has 20)."
    return write_cohort(tmp_path / "cohort")


def edit_csv(path, fn):
    df = pd.read_csv(path, dtype=str)
    df = fn(df)
    df.to_csv(path, index=False)


def raises(root, *fragments):
    with pytest.raises(CohortError) as e:
        load_cohort(root)
    msg = str(e.value)
    for f in fragments:
        assert f in msg, f"{f!r} not in message:\n{msg}"
    return msg


def test_valid_cohort_loads(cohort_dir):
    c = load_cohort(cohort_dir)
    assert c.n_patients == 12 and c.n_images == 12
    assert c.clinical["label"].tolist() == [i % 2 for i in range(12)]
    assert c.categorical == ["parity"] and c.numeric == ["age", "creatinine"]


def test_missing_image_file(cohort_dir):
    (cohort_dir / "images" / "p03_0.png").unlink()
    raises(cohort_dir, "images.csv", "line 5", "images/p03_0.png", "not found")


def test_corrupt_image(cohort_dir):
    p = cohort_dir / "images" / "p04_0.png"
    p.write_bytes(p.read_bytes()[:100])  # truncated
    raises(cohort_dir, "line 6", "images/p04_0.png", "cannot be read")


def test_not_an_image(cohort_dir):
    (cohort_dir / "images" / "p05_0.png").write_text("this is not a picture")
    raises(cohort_dir, "images/p05_0.png", "cannot be read")


@pytest.mark.parametrize("bad", ["../outside.png", "images/../../outside.png", "/etc/passwd"])
def test_path_escaping_cohort(cohort_dir, bad):
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(cohort_dir.parent / "outside.png")
    edit_csv(cohort_dir / "images.csv", lambda d: d.assign(path=[bad] + d["path"].tolist()[1:]))
    raises(cohort_dir, "line 2", bad, "outside the cohort folder")


def test_mask_escaping_cohort(cohort_dir):
    edit_csv(cohort_dir / "images.csv",
             lambda d: d.drop(columns=["x0", "y0", "x1", "y1"]).assign(mask=["../m.png"] + [None] * (len(d) - 1)))
    raises(cohort_dir, "line 2", "../m.png", "outside the cohort folder")


def test_duplicate_patient_id(cohort_dir):
    edit_csv(cohort_dir / "clinical.csv", lambda d: d.assign(patient_id=d["patient_id"].replace("P05", "P04")))
    raises(cohort_dir, "duplicate patient_id", "'P04'", "lines 6, 7")


def test_images_of_unknown_patients(cohort_dir):
    edit_csv(cohort_dir / "images.csv", lambda d: d.assign(patient_id=d["patient_id"].replace("P07", "X99")))
    raises(cohort_dir, "not in clinical.csv", "line 9", "'X99'")


def test_patient_without_image(cohort_dir):
    edit_csv(cohort_dir / "images.csv", lambda d: d[d["patient_id"] != "P08"])
    raises(cohort_dir, "no image", "'P08'")


def test_label_with_three_values(cohort_dir):
    edit_csv(cohort_dir / "clinical.csv", lambda d: d.assign(label=["0", "1", "2"] * 4))
    raises(cohort_dir, "'label'", "exactly two values", "'2'")


def test_label_with_one_value(cohort_dir):
    edit_csv(cohort_dir / "clinical.csv", lambda d: d.assign(label="1"))
    raises(cohort_dir, "'label'", "exactly two values", "found 1")


def test_text_labels_need_positive(cohort_dir):
    edit_csv(cohort_dir / "clinical.csv", lambda d: d.assign(label=d["label"].map({"0": "normal", "1": "PE"})))
    raises(cohort_dir, "'label'", "positive", "cohort.toml")
    (cohort_dir / "cohort.toml").write_text('[label]\npositive = "PE"\n')
    assert load_cohort(cohort_dir).clinical["label"].tolist() == [i % 2 for i in range(12)]


def test_empty_label(cohort_dir):
    edit_csv(cohort_dir / "clinical.csv", lambda d: d.assign(label=[None] + d["label"].tolist()[1:]))
    raises(cohort_dir, "'label'", "line 2")


def test_class_too_small_to_split(tmp_path):
    root = write_cohort(tmp_path / "c", n=12)
    edit_csv(root / "clinical.csv", lambda d: d.assign(label=["1"] * 9 + ["0"] * 3))
    c = load_cohort(root)
    with pytest.raises(CohortError) as e:
        split_cohort(c)
    assert "too small" in str(e.value) and "0 (3 patients)" in str(e.value)


def test_text_in_numeric_column(cohort_dir):
    edit_csv(
        cohort_dir / "clinical.csv",
        lambda d: d.assign(creatinine=d["creatinine"].tolist()[:6] + ["high"] + d["creatinine"].tolist()[7:]),
    )
    msg = raises(cohort_dir, "'creatinine'", "line 8", "P06", "'high'")
    assert "categorical" in msg  # says what to do


def test_missing_values_are_not_errors(cohort_dir):
    edit_csv(cohort_dir / "clinical.csv", lambda d: d.assign(creatinine=["NA", ""] + d["creatinine"].tolist()[2:]))
    c = load_cohort(cohort_dir)
    assert c.clinical["creatinine"].isna().sum() == 2 and "creatinine" in c.numeric


@pytest.mark.parametrize("fname", ["clinical.csv", "images.csv"])
def test_empty_csv(cohort_dir, fname):
    (cohort_dir / fname).write_text("")
    raises(cohort_dir, fname, "empty")


@pytest.mark.parametrize(
    "fname,header", [("clinical.csv", "patient_id,label,age\n"), ("images.csv", "patient_id,path\n")]
)
def test_header_only_csv(cohort_dir, fname, header):
    (cohort_dir / fname).write_text(header)
    raises(cohort_dir, fname, "no rows")


@pytest.mark.parametrize(
    "fname,col", [("clinical.csv", "label"), ("clinical.csv", "patient_id"), ("images.csv", "path")]
)
def test_missing_required_column(cohort_dir, fname, col):
    edit_csv(cohort_dir / fname, lambda d: d.drop(columns=[col]))
    raises(cohort_dir, fname, f"'{col}'", "missing")


@pytest.mark.parametrize("fname", ["clinical.csv", "images.csv"])
def test_missing_csv_file(cohort_dir, fname):
    (cohort_dir / fname).unlink()
    raises(cohort_dir, fname, "not found")


def test_missing_cohort_folder(tmp_path):
    raises(tmp_path / "nope", "nope", "not found", "pe-renal synth")


def test_roi_box_outside_image(cohort_dir):
    edit_csv(cohort_dir / "images.csv", lambda d: d.assign(x1=["80"] + d["x1"].tolist()[1:]))
    raises(cohort_dir, "line 2", "images/p00_0.png", "does not fit")


def test_roi_box_incomplete_columns(cohort_dir):
    edit_csv(cohort_dir / "images.csv", lambda d: d.drop(columns=["y1"]))
    raises(cohort_dir, "x0, y0, x1, y1")


def test_missing_mask_file(cohort_dir):
    edit_csv(cohort_dir / "images.csv",
             lambda d: d.drop(columns=["x0", "y0", "x1", "y1"]).assign(mask=["masks/none.png"] + [None] * (len(d) - 1)))
    raises(cohort_dir, "line 2", "masks/none.png", "not found")


def test_mask_of_wrong_shape(cohort_dir):
    (cohort_dir / "masks").mkdir()
    Image.fromarray(np.full((10, 10), 255, np.uint8)).save(cohort_dir / "masks" / "m.png")
    edit_csv(cohort_dir / "images.csv",
             lambda d: d.drop(columns=["x0", "y0", "x1", "y1"]).assign(mask=["masks/m.png"] + [None] * (len(d) - 1)))
    raises(cohort_dir, "line 2", "mask shape")


def test_same_image_twice(cohort_dir):
    edit_csv(cohort_dir / "images.csv", lambda d: d.assign(path=[d["path"][0]] + d["path"].tolist()[:-1]).assign(
        patient_id=d["patient_id"]))
    # P01's row now points at P00's image, and P11's image is gone from the table
    raises(cohort_dir, "more than once", "images/p00_0.png")


def test_bad_toml(cohort_dir):
    (cohort_dir / "cohort.toml").write_text("[label\ncolumn = 'x'\n")
    raises(cohort_dir, "cohort.toml", "not valid TOML")


def test_unknown_toml_key(cohort_dir):
    (cohort_dir / "cohort.toml").write_text("[label]\ncolum = 'group'\n")
    raises(cohort_dir, "cohort.toml", "colum")


def test_toml_names_unknown_column(cohort_dir):
    (cohort_dir / "cohort.toml").write_text("[clinical]\ncategorical = ['parit']\n")
    raises(cohort_dir, "cohort.toml", "'parit'", "Columns available")


def test_imposed_split_bad_value(cohort_dir):
    edit_csv(cohort_dir / "clinical.csv", lambda d: d.assign(split=["train"] * 8 + ["validation"] + ["test"] * 3))
    raises(cohort_dir, "'split'", "line 10", "'validation'")


def test_imposed_split_missing_a_class(cohort_dir):
    edit_csv(cohort_dir / "clinical.csv", lambda d: d.assign(split=["train"] * 10 + ["test"] * 2).assign(
        label=["0", "1"] * 5 + ["1", "1"]))
    with pytest.raises(CohortError) as e:
        split_cohort(load_cohort(cohort_dir))
    assert "test set" in str(e.value) and "0 normal" in str(e.value)


def test_error_lists_many_problems_at_once(cohort_dir):
    for i in range(3):
        (cohort_dir / "images" / f"p0{i}_0.png").unlink()
    msg = raises(cohort_dir, "p00_0.png", "p01_0.png", "p02_0.png")
    assert msg.count("not found") == 3


def test_nothing_written_into_cohort_folder(tmp_path):
    root = write_cohort(tmp_path / "c", n=10)
    (root / "cohort.toml").write_text("[clinical]\ncategorical = ['parity']\n")
    before = tree_state(root)
    c = load_cohort(root)
    split_cohort(c)
    for i in range(c.n_images):
        c.image(i)
    assert tree_state(root) == before         # no file added, removed or changed (content, size or mtime)
    (root / "images" / "p01_0.png").unlink()  # a failing load writes nothing either
    before_fail = tree_state(root)
    with pytest.raises(CohortError):
        load_cohort(root)
    assert tree_state(root) == before_fail
    assert before_fail == {k: v for k, v in before.items() if k != str(root / "images" / "p01_0.png")}


def test_cli_check_prints_message_without_traceback(cohort_dir):
    edit_csv(cohort_dir / "clinical.csv", lambda d: d.assign(patient_id=d["patient_id"].replace("P05", "P04")))
    r = subprocess.run([PE_RENAL, "check", str(cohort_dir)], capture_output=True, text=True)
    assert r.returncode == 2
    assert "duplicate patient_id" in r.stderr and "P04" in r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""


def test_cli_check_ok(cohort_dir):
    r = subprocess.run([PE_RENAL, "check", str(cohort_dir), "--cv-splits", "4"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "patients: 12" in r.stdout and "images:   12" in r.stdout and "creatinine" in r.stdout
    assert "8 training / 4 test" in r.stdout


def test_the_same_image_under_two_patients_is_refused_and_near_copies_are_named(tmp_path):
    "Byte-identical files of two patients: a leak, refused naming both rows and patients; a re-encoded copy: a warning."
    import shutil
    import warnings
    from PIL import Image
    from conftest import write_cohort
    root = write_cohort(tmp_path / "c", n=12)
    shutil.copy(root / "images" / "p00_0.png", root / "images" / "p03_0.png")  # P03's image is P00's, byte for byte
    with pytest.raises(CohortError) as e:
        load_cohort(root)
    msg = str(e.value)
    assert "identical bytes" in msg and "P00" in msg and "P03" in msg and "p00_0.png" in msg and "p03_0.png" in msg
    # the same picture re-encoded (other bytes, one grey level brighter): loads, with a warning naming the pair
    a = np.asarray(Image.open(root / "images" / "p00_0.png")).astype(int)
    Image.fromarray(np.clip(a + 1, 0, 255).astype(np.uint8)).save(root / "images" / "p03_0.png")
    with pytest.warns(UserWarning, match="near-identical") as w:
        load_cohort(root)
    assert "P00" in str(w[0].message) and "P03" in str(w[0].message)
    # distinct images: no warning
    Image.fromarray(np.random.default_rng(9).integers(0, 255, (40, 50), dtype=np.uint8)).save(
        root / "images" / "p03_0.png"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_cohort(root)


def test_a_huge_cell_is_quoted_short(tmp_path):
    """A 2 MB cell in a numeric column: the message names file, line, patient and column, and quotes about 80
    characters of it."""
    from conftest import write_cohort
    root = write_cohort(tmp_path / "c", n=12)
    df = pd.read_csv(root / "clinical.csv")
    df["creatinine"] = df["creatinine"].astype(object)
    df.loc[3, "creatinine"] = "7" * 1000 + "x" * 2_000_000
    df.to_csv(root / "clinical.csv", index=False)
    with pytest.raises(CohortError) as e:
        load_cohort(root)
    msg = str(e.value)
    assert (
        len(msg) < 700 and "creatinine" in msg and "line 5" in msg and "P03" in msg and "2001000 characters" in msg
    ), msg[:800]


def test_an_empty_feature_list_is_refused_by_check(tmp_path):
    "features = [] in cohort.toml: refused when the cohort is read (check), not later in run's modelling stage."
    from conftest import write_cohort
    root = write_cohort(tmp_path / "c", n=12)
    (root / "cohort.toml").write_text("[clinical]\nfeatures = []\n")
    with pytest.raises(CohortError, match=r"features is empty.*'age'"):
        load_cohort(root)
