"""The validation report (`pe-renal validate`) as a person sees it: opened in headless Chromium and read as rendered
text, headings, tables and images. Set PE_RENAL_TEST_VALIDATION to a validation folder to check that one instead of a
small validation of the shared study's model at a synthetic second site (tests/conftest.py `v_prev`, shared with
tests/test_external.py)."""
import json
import os
import re
from pathlib import Path

import pandas as pd
import pytest

from conftest import MARKUP, needs_chromium, read_in_chromium

pytestmark = [needs_chromium]
CI = re.compile(r"^-?\d+\.\d{3} \(-?\d+\.\d{3} to -?\d+\.\d{3}\)$")
SECTIONS = ["1. Case mix: development vs validation patients", "2. Discrimination and calibration",
            "3. Threshold metrics at the development thresholds", "4. Decision curve at this hospital's prevalence",
            "5. Updating the model to this hospital", "6. Is this cohort big enough"]


@pytest.fixture(scope="module")
def folder(request):
    "The folder given, else the session's validation at a second site with 20% prevalence (tests/conftest.py)."
    if os.environ.get("PE_RENAL_TEST_VALIDATION"):
        return Path(os.environ["PE_RENAL_TEST_VALIDATION"])
    return request.getfixturevalue("v_prev")


@pytest.fixture(scope="module")
def rendered(folder):
    out = read_in_chromium(folder / "report.html")
    return dict(out, imgs=[i[:3] for i in out["imgs"]])  # alt, loaded, natural width


@pytest.mark.slow
def test_status_headings_and_figures_are_shown(rendered, folder):
    meta = json.loads((folder / "validate.json").read_text())
    assert not rendered["errors"] and not sorted({m.group(0) for m in MARKUP.finditer(rendered["text"])})
    if meta["status"]:                                    # a synthetic or untrained run says so first, and in the title
        assert rendered["status"].startswith(meta["status"]) and rendered["title"].startswith(meta["status"])
    assert rendered["h1"] == f"External validation at {Path(meta['cohort']).name}"
    assert rendered["h2"] == SECTIONS
    assert len(rendered["imgs"]) == 3 and all(ok and w > 100 for _, ok, w in rendered["imgs"]), rendered["imgs"]
    for bad in ("-0.000", "nan", "NaN", "True", "False", "p_holm", "n_exact", "this_cohort"):
        assert not re.search(rf"(?<![\w.]){re.escape(bad)}(?!\w)", rendered["text"]), bad


@pytest.mark.slow
def test_every_number_has_its_interval_and_equals_the_tables(rendered, folder):
    cal = pd.read_csv(folder / "tables" / "calibration.csv")
    t = next(t for t in rendered["tables"] if t["header"][:1] == ["Model"] and "O:E ratio (95% CI)" in t["header"])
    rows = [dict(zip(t["header"], r)) for r in t["rows"]]
    assert [r["Model"] for r in rows] == list(cal["model"])
    for r, c in zip(rows, cal.itertuples()):
        for col in ("C-statistic (DeLong 95% CI)", "O:E ratio (95% CI)", "Calibration-in-the-large (95% CI)",
                    "Calibration slope (95% CI)"):
            assert CI.match(r[col]), (col, r[col])
        assert r["O:E ratio (95% CI)"] == f"{c.oe:.3f} ({c.oe_lo:.3f} to {c.oe_hi:.3f})"
        assert r["C-statistic (DeLong 95% CI)"].startswith(f"{c.c:.3f} (")
    thr = next(t for t in rendered["tables"] if "Sensitivity (95% CI)" in t["header"])
    assert len(thr["rows"]) == len(cal) and all(CI.match(v) for r in thr["rows"] for v in r[2:]), thr
    for t in rendered["tables"]:  # every table but Table 1 has headings in words
        if t["header"][:1] == ["variable"]:
            continue
        assert all(h[:1].isupper() or h[:1] in "pz" for h in t["header"]), t["header"]
    text = rendered["text"]
    assert "Reading:" in text and all(f"{m}: risks" in text or f"{m}: observed" in text for m in cal["model"])
    saved = json.loads((folder / "validate.json").read_text()).get("saved_update")
    assert ("Saved: updated_model.skops, the model with the " in text) == bool(saved)
