"""`report` on a results folder: a damaged or missing file is named (the table, a figure, report.html that cannot be
written), and the page says which figures are missing."""
import json
import re

import pandas as pd
import pytest

from conftest import cli, refused, tree_state


def _copy_results(study_results, tmp_path):
    import shutil
    return shutil.copytree(study_results[3], tmp_path / "results")


@pytest.mark.parametrize(
    "damage, names",
    [
        (lambda d: (d / "run.json").write_text((d / "run.json").read_text()[:500]), ["run.json", "JSON"]),
        (
            lambda d: (d / "run.json").write_text(
                json.dumps({k: v for k, v in json.loads((d / "run.json").read_text()).items() if k != "summary"})
            ),
            ["run.json", "summary"],
        ),
        (lambda d: (d / "run.json").write_text("[1, 2]"), ["run.json", "list"]),
        (
            lambda d: (
                pd.read_csv(d / "tables" / "delong_comparisons.csv")
                .drop(columns=["cohort"])
                .to_csv(d / "tables" / "delong_comparisons.csv", index=False)
            ),
            ["delong_comparisons.csv", "cohort"],
        ),
    ],
)
def test_report_refuses_a_damaged_results_folder_naming_the_file(capsys, study_results, tmp_path, damage, names):
    d = _copy_results(study_results, tmp_path)
    damage(d)
    before = tree_state(d)
    err = refused(capsys, "report", d, says=names + ["run the study again"])
    assert tree_state(d) == before and len(err) < 800, err


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
