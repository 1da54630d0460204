"""Cohort files as people write them, read by `check` and `load_cohort`: separators, decimal commas, byte-order marks,
Unicode forms, Excel's habits (a sep= line, trailing empty columns), headers and rows that disagree, ROI boxes and
masks, and `check` applying the limits that the run will meet. Malformed files of any shape (hypothesis) never crash
and never write. (The errors of the cohort contract, one per kind: tests/test_cohort_errors.py.)"""
import contextlib
import csv
import errno
import io
import os
import re
import shutil
import tempfile
import unicodedata
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from pe_renal.cli import main
from pe_renal.core import PeRenalError
from pe_renal.data import load_cohort

from conftest import cli, edit, refused, tree_state, write_cohort


# ---- unreadable files, over-long paths, non-finite or duplicated entries are named -----------------------------------

def test_an_unreadable_clinical_csv_is_named(capsys, cohort_dir, monkeypatch):
    import pe_renal.tables as data   # clinical.csv is opened by read_table
    target = cohort_dir / "clinical.csv"
    if os.geteuid() == 0:   # root reads any file: make the open fail as it would for a normal user
        def deny(p, *a, **k):
            if Path(p) == target:
                raise PermissionError(errno.EACCES, "Permission denied", str(p))
            return open(p, *a, **k)
        monkeypatch.setattr(data, "open", deny, raising=False)
    else:
        target.chmod(0)
    refused(capsys, "check", cohort_dir, says=[str(target), "permission"])


def test_an_image_path_longer_than_the_file_system_allows(capsys, cohort_dir):
    img = pd.read_csv(cohort_dir / "images.csv")
    img.loc[3, "path"] = "images/" + "x" * 300 + ".png"
    img.to_csv(cohort_dir / "images.csv", index=False)
    refused(capsys, "check", cohort_dir, says=["line 5", "longer than the file system allows"])


def test_infinite_roi_coordinate_is_named(capsys, cohort_dir):
    img = pd.read_csv(cohort_dir / "images.csv", dtype=str)
    img.loc[2, "x1"] = "inf"
    img.to_csv(cohort_dir / "images.csv", index=False)
    refused(capsys, "check", cohort_dir, says=["'x1'", "line 4", "'inf'"])


def test_duplicated_column_name_fails_check(capsys, cohort_dir):
    text = (cohort_dir / "clinical.csv").read_text().splitlines()
    text = [text[0] + ",age"] + [line + ",30" for line in text[1:]]
    (cohort_dir / "clinical.csv").write_text("\n".join(text) + "\n")
    refused(capsys, "check", cohort_dir, says=["'age'", "more than once"])


# ---- `check` says OK only when `run` can succeed ---------------------------------------------------------------------

def test_classes_too_small_for_the_runs_cross_validation_fail_check(capsys, tmp_path):
    root = write_cohort(tmp_path / "c", n=16)   # 8 + 8: a 7:3 split leaves 6 + 5 for training
    code, out, err = cli(capsys, "check", root)
    assert code == 0 and "enough for 5-fold" in out
    refused(capsys, "check", root, "--cv-splits", "6", says=["6-fold", "--cv-splits 5"])
    # `run` applies the same limit before any feature is extracted
    refused(capsys, "run", root, "--out", tmp_path / "r", "--cv-splits", "6", "--backbone", "resnet18",
                  "--weights", "random", "--cache", tmp_path / "cache", says=["6-fold"])
    assert not (tmp_path / "cache").exists() and not (tmp_path / "r").exists()
    refused(capsys, "run", root, "--out", tmp_path / "r", "--dpi", "5", "--backbone", "resnet18", "--weights", "random",
            "--cache", tmp_path / "cache", says=["dpi", "30 to 1200"])
    refused(
        capsys, "run", root, "--out", tmp_path / "r", "--image-size", "8", "--backbone", "resnet18", "--weights",
        "random", "--cache", tmp_path / "cache", says=["--image-size", "32 to 1024"]
    )
    refused(
        capsys, "run", root, "--out", tmp_path / "r", "--finetune-cv", "refit", "--backbone", "resnet18", "--weights",
        "random", "--cache", tmp_path / "cache", says=["refit", "set finetune"]
    )
    assert not (tmp_path / "cache").exists() and not (tmp_path / "r").exists()


# ---- separators, byte-order marks and misplaced keys -----------------------------------------------------------------

@pytest.mark.parametrize("sep", [";", "\t"])
def test_semicolon_or_tab_separated_csv_is_read(capsys, cohort_dir, sep):
    for f in ("clinical.csv", "images.csv"):
        pd.read_csv(cohort_dir / f, dtype=str).to_csv(cohort_dir / f, index=False, sep=sep)
    code, out, err = cli(capsys, "check", cohort_dir)
    assert code == 0 and "patients: 20" in out


def test_toml_with_a_byte_order_mark_is_read(capsys, cohort_dir):
    clin = pd.read_csv(cohort_dir / "clinical.csv", dtype=str).rename(columns={"label": "group"})
    clin["group"] = clin["group"].map({"0": "normal", "1": "pe"})
    clin.to_csv(cohort_dir / "clinical.csv", index=False)
    (cohort_dir / "cohort.toml").write_bytes('[label]\ncolumn = "group"\npositive = "pe"\n'.encode("utf-8-sig"))
    code, out, err = cli(capsys, "check", cohort_dir)
    assert code == 0, err


def test_a_top_level_key_is_told_where_it_belongs(capsys, cohort_dir):
    (cohort_dir / "cohort.toml").write_text('label = "group"\n')
    err = refused(capsys, "check", cohort_dir, says=["[label]", 'column = "group"'])
    assert "unknown section [label]" not in err
    (cohort_dir / "cohort.toml").write_text('positive = "pe"\n')
    refused(capsys, "check", cohort_dir, says=["section [label]"])


# ---- `check` applies the limits fine-tuning will meet ----------------------------------------------------------------

def test_check_applies_the_limits_fine_tuning_will_meet(capsys, tmp_path):
    "check --finetune / --finetune-cv refuse, before any work, what run would refuse later, with advice that works."
    from pe_renal.split import check_finetune_sizes
    root = write_cohort(tmp_path / "c", n=20)                      # 7 + 7 training patients: too few to fine-tune
    code, out, err = cli(capsys, "check", root)
    assert code == 0, err
    refused(
        capsys, "check", root, "--finetune", "last", says=["--finetune last", "at least 10 of each", "--finetune none"]
    )
    refused(
        capsys, "run", root, "--out", tmp_path / "r", "--finetune", "last", "--weights", "random", "--backbone",
        "resnet18", "--cache", tmp_path / "cache", says=["at least 10 of each"]
    )
    assert (
        not (tmp_path / "cache").exists() and not (tmp_path / "r").exists()
    )  # refused before any feature was computed
    # refit: each fold's training part must allow a fine-tune; the advice (more folds) is checked to be enough
    split = pd.DataFrame(dict(patient_id=[f"P{i}" for i in range(40)], label=[0] * 20 + [1] * 20,
                              split=(["train"] * 14 + ["test"] * 6) * 2))           # 14 + 14 in training
    check_finetune_sizes(split, "last", "once", 3)
    with pytest.raises(PeRenalError, match=r"--cv-splits (\d+)") as e:
        check_finetune_sizes(split, "last", "refit", 3)
    better = int(re.search(r"--cv-splits (\d+)", str(e.value)).group(1))
    check_finetune_sizes(split, "last", "refit", better)  # the advice works
    with pytest.raises(PeRenalError):
        check_finetune_sizes(split, "last", "refit", better - 1)


# ---- clinical.csv: headers, rows, Unicode and many columns -----------------------------------------------------------

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


# ---- cohort.toml: the features and the label -------------------------------------------------------------------------

def test_a_feature_listed_twice_fails_check(capsys, cohort_dir):
    (cohort_dir / "cohort.toml").write_text('[clinical]\nfeatures = ["age", "age", "creatinine"]\n')
    refused(capsys, "check", cohort_dir, says=["cohort.toml", "'age'"])


def test_label_column_among_features_is_named_as_the_label(capsys, cohort_dir):
    (cohort_dir / "cohort.toml").write_text('[clinical]\nfeatures = ["label", "age"]\n')
    err = refused(capsys, "check", cohort_dir, says=["'label'"])
    assert "does not have" not in err, err


# ---- images.csv: ROI boxes and paths ---------------------------------------------------------------------------------

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


# ---- an imposed split ------------------------------------------------------------------------------------------------

def test_check_says_test_size_is_not_used_with_an_imposed_split(capsys, cohort_dir):
    edit(
        cohort_dir / "clinical.csv",
        lambda df: df.assign(split=["train" if i % 10 < 7 else "test" for i in range(len(df))]),
    )
    code, out, err = cli(capsys, "check", cohort_dir, "--test-size", "0.5")
    assert code == 0 and "--test-size is not used" in err
    code, out, err = cli(capsys, "check", cohort_dir)
    assert code == 0 and "--test-size" not in err


# ---- what is still accepted, and the cases next to each refusal ------------------------------------------------------

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


def test_cohort_toml_that_is_a_folder_is_named(capsys, cohort_dir):
    (cohort_dir / "cohort.toml").mkdir()
    refused(capsys, "check", cohort_dir, says=["cohort.toml", "a folder, not a file"])


# ---- malformed files of any shape never crash `check` and never write (property-based) -------------------------------

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


TRICKY = [
    "",
    " ",
    "0",
    "1",
    "2",
    "-1",
    "+1",
    "0.5",
    "1,5",
    "1e999",
    "-1e999",
    "inf",
    "-inf",
    "Infinity",
    "nan",
    "NaN",
    "NA",
    "null",
    "true",
    "0x10",
    "1_000",
    "P00",
    "P01",
    "P19",
    "P99",
    "train",
    "test",
    "TRAIN",
    "valid",
    "nulliparous",
    "images/p00_0.png",
    "images/p01_0.png",
    "images/",
    "images",
    "../outside.png",
    "/etc/passwd",
    "x" * 300 + ".png",
    "é",
    "\u00a0",
    '"',
    "'",
    ";",
    ",",
    "\t",
    "=1+1",
    "masks/none.png",
]


cell = st.one_of(st.sampled_from(TRICKY), st.text(max_size=6))


CLIN_COLS = ["patient_id", "label", "age", "creatinine", "parity", "split", "group", "", " label ", "age", "patient_id"]


IMG_COLS = ["patient_id", "path", "x0", "y0", "x1", "y1", "mask", "side", "view", "path", ""]


@st.composite
def csv_text(draw, columns, valid_rows):
    "A CSV made of a random header and random rows, or a valid file with some cells replaced, in a random dialect."
    sep = draw(st.sampled_from([",", ";", "\t"]))
    if draw(st.booleans()):
        header = draw(st.lists(st.sampled_from(columns), min_size=0, max_size=7))
        rows = draw(st.lists(st.lists(cell, min_size=len(header), max_size=len(header)), max_size=25))
    else:
        header, rows = valid_rows[0], [list(r) for r in valid_rows[1:]]
        for _ in range(draw(st.integers(1, 6))):
            if not rows:
                break
            i = draw(st.integers(0, len(rows) - 1))
            j = draw(st.integers(0, len(header) - 1))
            rows[i][j] = draw(cell)
        if draw(st.booleans()):
            rows = rows[: draw(st.integers(0, len(rows)))]
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=sep, lineterminator=draw(st.sampled_from(["\n", "\r\n"])))
    w.writerow(header)
    w.writerows(rows)
    return ("\ufeff" if draw(st.booleans()) else "") + buf.getvalue()


TOML_LINES = [
    "[label]",
    "[clinical]",
    "[other]",
    "[label.sub]",
    'column = "group"',
    'column = "label"',
    "column = 5",
    'positive = "1"',
    "positive = 1",
    "positive = true",
    "positive = [1]",
    'features = ["age"]',
    "features = [1, 2]",
    'features = ["nope"]',
    'categorical = ["parity"]',
    'categorical = ["age"]',
    'exclude = ["creatinine"]',
    'exclude = "age"',
    'label = "group"',
    "label = 1",
    "= 1",
    "[",
    '"unclosed',
    "features = []",
    'outcome_defining = ["age"]',
    'outcome_defining = ["nope"]',
    "outcome_defining = 1",
    "[clinical.exclude]",
    'age = "defines the outcome"',
    "age = 1",
    'exclude = {creatinine = "why"}',
    "exclude = {age = []}",
]


toml_text = st.one_of(st.lists(st.sampled_from(TOML_LINES), max_size=6).map("\n".join), st.text(max_size=40))


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return write_cohort(tmp_path_factory.mktemp("template") / "cohort", n=20)


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def check_never_crashes_or_writes(template, name, text):
    with tempfile.TemporaryDirectory() as d:
        root = Path(d) / "cohort"
        shutil.copytree(template, root)
        (root / name).write_bytes(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text)
        before = tree_state(root)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["check", str(root)])       # any exception other than the typed error fails the test here
        assert code in (0, 2), (code, err.getvalue())
        if code == 2:
            assert err.getvalue().startswith("pe-renal check: error: ") and "Traceback" not in err.getvalue()
        assert tree_state(root) == before           # nothing written, changed or removed in the cohort folder


@SETTINGS
@given(data=st.data())
def test_malformed_clinical_csv(template, data):
    check_never_crashes_or_writes(
        template, "clinical.csv", data.draw(csv_text(CLIN_COLS, _rows(template / "clinical.csv")))
    )


@SETTINGS
@given(data=st.data())
def test_malformed_images_csv(template, data):
    check_never_crashes_or_writes(template, "images.csv", data.draw(csv_text(IMG_COLS, _rows(template / "images.csv"))))


@SETTINGS
@given(text=toml_text)
def test_malformed_cohort_toml(template, text):
    check_never_crashes_or_writes(template, "cohort.toml", text)


@SETTINGS
@given(blob=st.binary(max_size=200))
def test_arbitrary_bytes_as_clinical_csv(template, blob):
    check_never_crashes_or_writes(template, "clinical.csv", blob)


number_like = st.one_of(
    st.sampled_from(["inf", "-inf", "nan", "1e999", "-1e999", "1e308", "-0.0", "1e-320", "99999999999"]),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.integers(-(10**30), 10**30).map(str),
    st.sampled_from(TRICKY),
)


@SETTINGS
@given(file_col=st.sampled_from([("clinical.csv", "age"), ("clinical.csv", "creatinine"), ("images.csv", "x0"),
                                 ("images.csv", "y0"), ("images.csv", "x1"), ("images.csv", "y1")]),
       row=st.integers(0, 19), value=number_like)
def test_any_value_in_a_numeric_column(template, file_col, row, value):
    name, col = file_col
    rows = _rows(template / name)
    rows[1 + row][rows[0].index(col)] = value
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    check_never_crashes_or_writes(template, name, buf.getvalue())
