"""report.html as a person sees it: opened in headless Chromium, read as rendered text, tables, images and a screenshot.

The results folder comes from the shared `study_results` fixture (a small synthetic run); set PE_RENAL_TEST_RESULTS to a
results folder (e.g. a `pe-renal demo` output) to check that report instead.
"""
import hashlib
import os
from itertools import combinations
from pathlib import Path

import pandas as pd
import pytest
from conftest import MARKUP, needs_chromium, read_in_chromium

pytestmark = [needs_chromium]


@pytest.fixture(scope="module")
def results(request):
    if os.environ.get("PE_RENAL_TEST_RESULTS"):
        return Path(os.environ["PE_RENAL_TEST_RESULTS"])
    return request.getfixturevalue("study_results")[3]


@pytest.fixture(scope="module")
def rendered(results, tmp_path_factory):
    "What Chromium shows: body text, tables (source and cell texts), images, and a full-page screenshot."
    shot = tmp_path_factory.mktemp("browser") / "report.png"
    out = read_in_chromium(results / "report.html", screenshot=shot)
    print(f"screenshot: {shot}")
    return dict(out, screenshot=shot)


def test_visible_text_has_no_markup(rendered):
    hits = sorted({m.group(0) for m in MARKUP.finditer(rendered["text"])})
    assert not hits, f"markup shown as text: {hits}"
    assert not rendered["errors"]


def test_every_table_renders_with_the_rows_of_its_csv(rendered, results):
    tables = rendered["tables"]
    sources = [t["source"] for t in tables]
    expected = ["tables/table1_by_group.csv", "tables/performance_formatted.csv", "tables/internal_validation.csv",
                "tables/delong_comparisons.csv", "tables/lasso_coefficients.csv", "tables/gradcam_checks.csv",
                "tables/shap_importance_family.csv", "tables/tripod_ai.csv", "tables/calibration.csv",
                "tables/gradcam_signature_agreement.csv"]
    assert set(expected) <= set(sources), sorted(set(expected) - set(sources))
    assert len(tables) == len(sources) >= len(expected) and "" not in sources, sources
    for t in tables:
        csv = pd.read_csv(results / t["source"], dtype=str)
        for cond in t["filter"].split():              # a table may show part of its file, and says which part
            col, _, value = cond.partition("=")
            csv = csv[csv[col] == value]
        assert t["rows"] and len(t["rows"]) == len(csv), t["source"]
        assert all(len(r) == len(t["header"]) for r in t["rows"]), t["source"]


def test_performance_cells_equal_the_csv(rendered, results):
    perf = pd.read_csv(results / "tables/performance_formatted.csv")
    t = next(t for t in rendered["tables"] if t["source"] == "tables/performance_formatted.csv")
    col = t["header"].index("AUC (95% CI)")
    assert [r[col] for r in t["rows"]] == list(perf["AUC (95% CI)"])
    assert [r[t["header"].index("model")] for r in t["rows"]] == list(perf["model"])
    assert any("apparent (in-sample, optimistic)" in r[t["header"].index("cohort")] for r in t["rows"])
    # the internal-validation estimate with its CI sits beside the apparent training AUC, as in run.json
    import json
    iv = json.loads((results / "run.json").read_text())["internal_validation"]
    col = t["header"].index("Internal validation AUC (95% CI)")
    shown = {r[t["header"].index("model")]: r[col] for r in t["rows"] if r[col]}
    assert shown and all(f"{iv[m]['auc']:.3f}" in v for m, v in shown.items() if iv[m]["auc"] is not None), (shown, iv)


def test_gradcam_ratios_are_shown_beside_a_whole_kidney_map(rendered, results):
    """Each map's kidney ratio sits beside the ratio a map of exactly the whole kidney reaches on the same grid, said
    in words."""
    p = results / "tables/gradcam_checks.csv"
    if not p.is_file():
        pytest.skip("no Grad-CAM in this run")
    csv = pd.read_csv(p)
    uni = csv["kidney_ratio_uniform"]
    assert (uni > 1).all() and (uni <= 1 / csv["kidney_area_fraction"] + 1e-6).all(), csv
    t = next(t for t in rendered["tables"] if t["source"] == "tables/gradcam_checks.csv")
    col = t["header"].index("ratio of a whole-kidney map")
    assert [float(r[col]) for r in t["rows"]] == pytest.approx(list(uni), abs=0.0015)
    assert (
        f"a map marking exactly the whole kidney would reach a ratio of {uni.min():.2f}-{uni.max():.2f}"
        in rendered["text"]
    )


def test_checklist_matches_its_csv(rendered, results):
    tripod = pd.read_csv(results / "tables/tripod_ai.csv", dtype=str).fillna("")
    t = next(t for t in rendered["tables"] if t["source"] == "tables/tripod_ai.csv")
    assert [r[0] for r in t["rows"]] == list(tripod.iloc[:, 0])
    assert [r[-1] for r in t["rows"]] == list(tripod.iloc[:, -1])


def test_every_image_loaded(rendered, results):
    imgs = rendered["imgs"]
    n_png = len(list((results / "figures").glob("*.png")))
    assert len(imgs) >= 12 and all(ok and w > 0 and h > 0 for _, ok, w, h in imgs), imgs
    assert len(imgs) <= n_png


def test_no_two_figures_are_identical(results):
    digests = {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((results / "figures").iterdir())
        if p.is_file()
    }
    same = [(a, b) for a, b in combinations(digests, 2) if digests[a] == digests[b]]
    assert len(digests) >= 12 and not same, same


def test_status_is_stated(rendered, results):
    import json
    m = json.loads((results / "run.json").read_text())
    if m.get("status"):
        assert m["status"] in rendered["text"]
        for d in (results, results / "tables", results / "figures"):
            readme = (d / "README.txt").read_text()
            assert m["status"] in readme and "run.json" in readme


def test_screenshot_is_saved(rendered):
    assert rendered["screenshot"].stat().st_size > 50_000


def test_shap_family_caption_says_what_its_csv_says(rendered, results):
    """The SHAP family figure's caption, as shown, gives the same numbers as shap_importance_family.csv (abs leading,
    signed beside)."""
    import re
    fam = pd.read_csv(results / "tables" / "shap_importance_family.csv")
    cap = next(line for line in rendered["text"].splitlines() if line.startswith("figures/shap_families.png"))
    assert "|the family's summed SHAP values|" in cap
    for r in fam.itertuples():
        assert (
            f"{r.family}: mean |net contribution| {r.mean_abs_net_contribution:.3f}, signed mean "
                f"{r.mean_net_contribution:+.3f}"
            in cap
        ), cap
    first = re.search(r"mean \|net contribution\| ([0-9.]+)", cap).group(1)
    assert float(first) == pytest.approx(
        fam["mean_abs_net_contribution"].max(), abs=5e-4
    )  # the table's order: abs leads


def test_shap_family_table_leads_with_the_absolute_contribution(rendered):
    t = next(t for t in rendered["tables"] if t["source"] == "tables/shap_importance_family.csv")
    assert t["header"][:3] == ["family", "mean |net contribution|", "mean net contribution (signed)"], t["header"]
