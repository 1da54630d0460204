"""Property-based: malformed clinical.csv, images.csv and cohort.toml, generated at random, give either success or one
clear error (exit status 2, no traceback) from `pe-renal check`, and never a write into the cohort folder."""
import contextlib
import csv
import io
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pe_renal.cli import main

from conftest import tree_state, write_cohort

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
