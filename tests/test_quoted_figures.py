"""Figures the report quotes from the benchmarks are the benchmarks' own numbers: the benchmark's per-seed rows ship
with the package (pe_renal/resources, package data), each figure is recomputed from them (mean and range over the
seeds), the shipped rows are the ones the benchmark committed, and a built wheel carries them, so neither a rerun of a
benchmark nor a pip install can leave the report quoting stale or missing figures; the words name how many cohorts and
which protocol."""
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SHIPPED = ROOT / "pe_renal" / "resources"
OPTIMISM_ROWS = ("finetune_optimism.csv", "finetune_optimism_null.csv")


def _want(sig: pd.DataFrame, null: pd.DataFrame) -> dict:
    "What each quoted figure is, in the benchmark's columns."
    return dict(signal=sig["optimism_vs_fresh"], null_cv_auc=null["once_cv"], null=null["optimism_vs_fresh"],
                refit_cv_auc=sig["refit_3f"], truth=sig["fresh"], refit_null_cv_auc=null["refit_3f"])


@pytest.mark.parametrize("name", OPTIMISM_ROWS)
@pytest.mark.skipif(not (RESULTS / "finetune_optimism.csv").is_file(), reason="benchmark results not in this checkout")
def test_the_shipped_rows_are_the_benchmarks_committed_rows(name):
    assert (SHIPPED / name).read_bytes() == (RESULTS / name).read_bytes(), (
        f"pe_renal/resources/{name} differs from benchmarks/results/{name}: copy the benchmark's rows into the package"
    )


def test_fine_tune_optimism_quoted_as_mean_and_range_of_the_shipped_rows():
    from pe_renal.quoted import _OPTIMISM, FINETUNE_OPTIMISM
    sig, null = (pd.read_csv(SHIPPED / n) for n in OPTIMISM_ROWS)
    want = _want(sig, null)
    assert set(_OPTIMISM) == set(want)
    for k, v in want.items():
        assert _OPTIMISM[k] == pytest.approx((v.mean(), v.min(), v.max()), abs=1e-12), k
        assert FINETUNE_OPTIMISM[k] == f"{v.mean():.2f} ({v.min():.2f}-{v.max():.2f})", k
    assert f"{len(sig)} synthetic cohorts" in FINETUNE_OPTIMISM["n"] and len(sig) == len(null)
    assert (
        f"{int(sig['n_train'].iloc[0])} training patients" in FINETUNE_OPTIMISM["n"] and sig["n_train"].nunique() == 1
    )
    assert "5-fold x 4" in FINETUNE_OPTIMISM["protocol"] and "3-fold x 1" in FINETUNE_OPTIMISM["protocol"]


def test_shipped_tables_are_read_from_the_package_folder():
    from pe_renal.quoted import shipped_table
    pd.testing.assert_frame_equal(shipped_table("finetune_optimism_null"), pd.read_csv(SHIPPED / OPTIMISM_ROWS[1]))
    items = shipped_table("tripod_ai_items", dtype=str, keep_default_na=False)
    assert items["item number"].iloc[0] == "1" and items["item number"].is_unique
    with pytest.raises(FileNotFoundError):
        shipped_table("no_such_table")


def test_the_words_of_a_fine_tuned_run_quote_mean_range_n_and_protocol():
    from types import SimpleNamespace
    from pe_renal.quoted import FINETUNE_OPTIMISM, finetune_validation_words
    o = FINETUNE_OPTIMISM
    once = finetune_validation_words(SimpleNamespace(finetune="last", finetune_cv="once", cv_splits=5, cv_repeats=4))
    refit = finetune_validation_words(SimpleNamespace(finetune="last", finetune_cv="refit", cv_splits=5, cv_repeats=4))
    for words, keys in ((once, ("signal", "null_cv_auc")), (refit, ("refit_cv_auc", "truth", "refit_null_cv_auc"))):
        assert (
            all(o[k] in words for k in keys) and o["n"] in words and o["protocol"] in words and "mean (range)" in words
        )


@pytest.mark.slow
def test_a_built_wheel_carries_the_shipped_tables_and_the_template(tmp_path):
    "Every file under pe_renal/resources and pe_renal/templates is package data: a wheel built from the sources has it."
    src = tmp_path / "src"
    src.mkdir()
    for name in ("setup.py", "settings.ini", "MANIFEST.in", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "pe_renal", src / "pe_renal", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", ".", "-w",
                    str(tmp_path / "dist")], cwd=src, check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    data = [p.relative_to(ROOT).as_posix() for d in ("resources", "templates")
            for p in (ROOT / "pe_renal" / d).iterdir()]
    assert len(data) >= 4 and "pe_renal/resources/finetune_optimism.csv" in data
    assert [p for p in data if p not in names] == []
