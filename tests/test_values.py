"""The one clinical value parser (pe_renal.values: `to_numeric`, `decimal_mark`, `column_kind`).
Property-based: clinical columns written in the spellings real spreadsheets use (decimal comma, thousands
separators, units, dates, inf, 1e308) are each read to the number meant or refused naming the column, never read to
another number; then the same through `load_cohort` (as `check` and `run` read it) and `predict`."""
import csv
import io
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pe_renal.core import CohortError
from pe_renal.data import load_cohort
from pe_renal.values import ABSURD, column_kind, to_numeric

from conftest import refused, write_cohort

SETTINGS = settings(max_examples=100, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# how a writer spells the number n / 10**d: a point-decimal writer (plain, groups of thousands with a comma, a space or
# an apostrophe) or a decimal-comma writer (plain, groups with a point or a space). One column, one writer's convention.
POINT = {"plain": lambda x, d: f"{x:.{d}f}",
         "comma groups": lambda x, d: f"{x:,.{d}f}",
         "space groups": lambda x, d: f"{x:,.{d}f}".replace(",", "\u00a0"),
         "apostrophe groups": lambda x, d: f"{x:,.{d}f}".replace(",", "'")}
COMMA = {"plain": lambda x, d: f"{x:.{d}f}".replace(".", ","),
         "point groups": lambda x, d: f"{x:,.{d}f}".translate(str.maketrans(",.", ".,")),
         "space groups": lambda x, d: f"{x:,.{d}f}".replace(",", " ").replace(".", ",")}
UNITS = ["y", "mg/dL", "%", "mmHg", "µmol/L", "kg", "g/l", "x10^9/L", "weeks"]
BAD = ["inf", "-inf", "Infinity", "1e308", "-1e308", "1e400", f"{ABSURD:.0e}", "2024-03-01", "01.03.2024", "10:30"]


@st.composite
def column(draw):
    """(cells, the numbers meant (NaN: missing), the file's delimiter, which cells are not plain numbers). A
    decimal-comma
    writer's point groups are never in a comma-separated file: there a lone point is a decimal point (the data
    contract)."""
    sep = draw(st.sampled_from([",", ";", "\t"]))
    family = draw(st.sampled_from(["point", "comma"]))
    spellings = POINT if family == "point" else {k: f for k, f in COMMA.items() if sep != "," or k != "point groups"}
    style = draw(st.sampled_from(sorted(spellings)))          # the writer's habit; a quarter of the cells another one
    d = draw(st.integers(0, 3))
    k = draw(st.integers(1, 9))                                # the column's magnitude: 10 to 10**9 in units of 10**-d
    ns = draw(st.lists(st.one_of(st.none(), st.integers(-10**k, 10**k)), min_size=1, max_size=12))
    cells, want, bad = [], [], []
    for i, n in enumerate(ns):
        if n is None:
            cells.append(None)
            want.append(np.nan)
            continue
        x = n / 10**d
        cells.append(spellings[style if draw(st.integers(0, 3)) else draw(st.sampled_from(sorted(spellings)))](x, d))
        want.append(float(f"{x:.{d}f}"))
    for i in draw(st.lists(st.integers(0, len(cells) - 1), max_size=3, unique=True)):   # cells a reader must refuse
        kind = draw(st.sampled_from(["unit", "bad"]))
        plain = f"{abs(ns[i] or 29) / 10**d:.{d}f}"
        cells[i] = (plain + draw(st.sampled_from(["", " "])) + draw(st.sampled_from(UNITS)) if kind == "unit"
                    else draw(st.sampled_from(BAD)))
        bad.append(i)
    return cells, np.array(want), sep, bad


def _table(cells):
    return pd.DataFrame({"patient_id": [f"P{i:02d}" for i in range(len(cells))], "x": cells})


@given(column())
@settings(SETTINGS, max_examples=200)   # fewer miss a misread 1,000 (checked by mutation)
def test_every_cell_is_read_to_its_number_or_the_column_is_refused_by_name(col):
    cells, want, sep, bad = col
    try:
        got = to_numeric(_table(cells), "x", "clinical.csv", sep=sep)
    except CohortError as e:
        msg = str(e)
        assert "clinical.csv: column 'x'" in msg, msg
        if not bad:
            assert "could be" in msg and "with a thousands separator" in msg, msg  # only an ambiguous spelling
        return
    assert not bad, (cells, got.tolist())                    # a unit, a date, inf or 1e308 is never read as a number
    np.testing.assert_array_equal(got.to_numpy(), want)      # exactly the number meant, NaN where the cell is empty


@given(
    st.lists(st.integers(-(10**6), 10**6), min_size=1, max_size=12),
    st.integers(0, 2),
    st.sampled_from([",", ";", "\t"]),
)
@SETTINGS
def test_plain_numbers_are_always_read(ns, d, sep):
    "Positive control: numbers written with a point and fewer than three decimals, no groups, are never refused."
    cells = [f"{n / 10**d:.{d}f}" for n in ns]
    got = to_numeric(_table(cells), "x", "clinical.csv", sep=sep)
    np.testing.assert_array_equal(got.to_numpy(), [float(c) for c in cells])


@pytest.mark.parametrize("cells, why", [
    (["166,000", "98,000", "250,000"], ["166000 (with a thousands separator) or 166.000 (with a decimal comma)"]),
    (["1,5", "0.5"], ["mixes a decimal comma ('1,5') and a decimal point ('0.5')"]),
    (["29 y", "31 y", "27"], ["Unit(s) found: 'y'", "line 2 (patient P00): '29 y'", "x_y"]),
    (["1.2 mg/dL", "0.9", "45%"], ["Unit(s) found: 'mg/dL', '%'"]),
    (["1.2", "1e308", "0.9"], ["line 3 (patient P01): '1e308'", "beyond ±1e15"]),
    (["1.2", "0.9", "inf"], ["line 4 (patient P02): 'inf'"]),
])
def test_each_kind_of_bad_value_is_named(cells, why):
    with pytest.raises(CohortError) as e:
        to_numeric(_table(cells), "x", "clinical.csv")
    for w in why:
        assert w in str(e.value), str(e.value)
    assert "166.000 (" not in str(e.value).replace(
        "or 166.000 (with a decimal comma)", ""
    )  # never advice that changes a magnitude


def test_thousands_separators_shown_by_the_column_are_read():
    got = to_numeric(_table(["166,000", "1,050,000", "98,000", None]), "x", "clinical.csv")
    np.testing.assert_array_equal(got.to_numpy(), [166000.0, 1050000.0, 98000.0, np.nan])
    got = to_numeric(_table(["1,5", "1.234,5", "2"]), "x", "clinical.csv", sep=";")
    np.testing.assert_array_equal(got.to_numpy(), [1.5, 1234.5, 2.0])


def test_column_kinds():
    assert column_kind(pd.Series(["29 y"] * 14)) == "unit"                    # never a 1-level (or 14-level) category
    assert column_kind(pd.Series([f"{a} y" for a in range(20, 34)])) == "unit"
    assert column_kind(pd.Series(["2024-03-0" + str(k % 6 + 1) for k in range(20)])) == "date"
    assert (
        column_kind(pd.Series(["nulliparous", "multiparous", "1"])) == "numeric"
    )  # a number among text: checked as numbers
    assert column_kind(pd.Series(["nulliparous", "multiparous"])) == "text"
    assert column_kind(pd.Series([None, None], dtype=object)) == "empty"


# ---- through load_cohort (check, run) -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def base(tmp_path_factory):
    "A small cohort and its clinical table as written (each example rewrites clinical.csv from it)."
    root = write_cohort(tmp_path_factory.mktemp("values") / "c", n=12)
    return root, pd.read_csv(root / "clinical.csv", dtype=str)


def _write(root, df, sep=","):
    buf = io.StringIO()
    df.to_csv(buf, index=False, sep=sep, quoting=csv.QUOTE_MINIMAL)
    (root / "clinical.csv").write_text(buf.getvalue(), encoding="utf-8")


@given(column())
@settings(SETTINGS, max_examples=40)
def test_load_cohort_reads_each_value_right_or_refuses_it_by_name(base, col):
    "The same property through clinical.csv as `check` and `run` read it: a new column 'lab' in a random delimiter."
    cells, want, sep, bad = col
    base, df = base[0], base[1].copy()
    df["lab"] = (cells * 12)[:12]
    want = np.resize(want, 12)  # every cell at least once
    _write(base, df, sep)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            c = load_cohort(base, check_images=False)
    except CohortError as e:
        assert "'lab'" in str(e), str(e)
        return
    assert "lab" in c.numeric and not bad, (df["lab"].tolist(), c.clinical["lab"].tolist())
    np.testing.assert_array_equal(c.clinical["lab"].to_numpy(dtype=float), want)


def test_check_refuses_an_age_in_years_with_its_unit(tmp_path):
    "'29 y' in every row of age: refused naming the column and the unit, never a 14-level categorical predictor."
    root = write_cohort(tmp_path / "c", n=14)
    df = pd.read_csv(root / "clinical.csv", dtype=str)
    df["age"] = df["age"] + " y"
    _write(root, df)
    with pytest.raises(CohortError, match=r"column 'age' .*\n(.*\n)*.*Unit\(s\) found: 'y'"):
        load_cohort(root, check_images=False)
    (root / "cohort.toml").write_text(
        '[clinical]\ncategorical = ["parity", "age"]\n'
    )  # declared a category: said, not silent
    with pytest.warns(UserWarning, match="'age' is declared categorical in cohort.toml but holds numbers with a unit"):
        load_cohort(root, check_images=False)


def test_a_date_column_is_refused_as_a_predictor_and_read_when_excluded(tmp_path):
    root = write_cohort(tmp_path / "c", n=12)
    df = pd.read_csv(root / "clinical.csv", dtype=str)
    df["exam_date"] = [f"2024-03-0{k % 6 + 1}" for k in range(12)]
    _write(root, df)
    with pytest.raises(CohortError, match="column 'exam_date' holds dates or times .* exam_date = \"date\""):
        load_cohort(root, check_images=False)
    (root / "cohort.toml").write_text('[clinical.exclude]\nexam_date = "date"\n')
    c = load_cohort(root, check_images=False)
    assert "exam_date" not in c.features and c.clinical["exam_date"].iloc[0] == "2024-03-01"


def test_an_absurd_creatinine_is_refused_naming_its_cell(tmp_path):
    root = write_cohort(tmp_path / "c", n=12)
    df = pd.read_csv(root / "clinical.csv", dtype=str)
    df.loc[4, "creatinine"] = "1e308"
    _write(root, df)
    with pytest.raises(CohortError, match=r"column 'creatinine' (.*\n)*  - line 6 \(patient P04\): '1e308'"):
        load_cohort(root, check_images=False)


# ---- through predict --------------------------------------------------------------------------------------------

def test_predict_refuses_a_unit_in_a_numeric_column_as_check_does(capsys, study_results, tmp_path):
    "'26 y' in a numeric column of a cohort to score: the same named refusal as `check` gives (exit 2), no traceback."
    import shutil
    from pe_renal.cli import main
    from pe_renal.model_file import load_model
    _, cohort, cfg, out = study_results
    num = load_model(out / "model.skops")["info"]["numeric"]
    assert num
    new = shutil.copytree(cohort, tmp_path / "new")
    df = pd.read_csv(new / "clinical.csv", dtype=str)
    df[num[0]] = "26 y"
    _write(new, df)
    code = main(["predict", str(new), "--model", str(out / "model.skops"), "--out", str(tmp_path / "p.csv"),
                 "--cache", cfg.cache, "--allow-overlap"])
    err = capsys.readouterr().err
    assert code == 2 and f"column {num[0]!r}" in err and "Unit(s) found: 'y'" in err and "Traceback" not in err, err
    df[num[0]] = "unknown"
    _write(new, df)  # text in every row: read as a category, refused by predict
    code = main(["predict", str(new), "--model", str(out / "model.skops"), "--out", str(tmp_path / "p.csv"),
                 "--cache", cfg.cache, "--allow-overlap"])
    err = capsys.readouterr().err
    assert code == 2 and repr(num[0]) in err and "'unknown'" in err and "Traceback" not in err, err
    assert not (tmp_path / "p.csv").exists()


# ---- clinical values through `check` ---------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["inf", "-inf", "Infinity", "1e999"])
def test_non_finite_clinical_value_fails_check(capsys, cohort_dir, value):
    clin = pd.read_csv(cohort_dir / "clinical.csv", dtype=str)
    clin.loc[4, "creatinine"] = value
    clin.to_csv(cohort_dir / "clinical.csv", index=False)
    refused(capsys, "check", cohort_dir, says=["'creatinine'", "line 6", repr(value)])


def test_decimal_commas(capsys, cohort_dir):
    from pe_renal.data import load_cohort
    clin = pd.read_csv(cohort_dir / "clinical.csv", dtype=str)
    comma = clin.assign(creatinine=clin["creatinine"].str.replace(".", ",", regex=False))
    comma.to_csv(cohort_dir / "clinical.csv", index=False, sep=";")      # as spreadsheets in many locales save it
    c = load_cohort(cohort_dir)
    np.testing.assert_allclose(c.clinical["creatinine"], clin["creatinine"].astype(float))
    assert "creatinine" in c.numeric
    comma.to_csv(cohort_dir / "clinical.csv", index=False)  # quoted "44,4" in a comma-separated file: the
    c = load_cohort(cohort_dir)  # values show their decimal comma, so read alike
    np.testing.assert_allclose(c.clinical["creatinine"], clin["creatinine"].astype(float))
    comma.assign(creatinine=["166,000"] * len(comma)).to_csv(
        cohort_dir / "clinical.csv", index=False
    )  # 166000 or 166.0?
    refused(capsys, "check", cohort_dir, says=["'creatinine'", "166000 (with a thousands separator) or 166.000"])


def test_semicolon_file_with_decimal_commas_and_a_comma_in_a_name_reads_the_numbers(cohort_dir):
    want = load_cohort(cohort_dir, check_images=False).clinical["creatinine"].to_numpy()
    df = pd.read_csv(cohort_dir / "clinical.csv", dtype=str).rename(
        columns={"creatinine": "creatinine (umol/L, serum)"}
    )
    df["creatinine (umol/L, serum)"] = df["creatinine (umol/L, serum)"].str.replace(".", ",", regex=False)
    df.to_csv(cohort_dir / "clinical.csv", sep=";", index=False)
    got = load_cohort(cohort_dir, check_images=False).clinical["creatinine (umol/L, serum)"].to_numpy()
    np.testing.assert_array_equal(got, want)
