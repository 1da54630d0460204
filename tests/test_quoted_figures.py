"""Figures the report quotes from the benchmarks are the benchmarks' own numbers: each is recomputed from the per-seed
rows the benchmark wrote (mean and range over the seeds), so a rerun of a benchmark cannot leave the report quoting
stale
figures, and the words name how many cohorts and which protocol."""
from pathlib import Path

import pandas as pd
import pytest

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


@pytest.mark.skipif(not (RESULTS / "finetune_optimism.csv").is_file(), reason="benchmark results not in this checkout")
def test_fine_tune_optimism_quoted_as_mean_and_range_of_the_benchmark_rows():
    from pe_renal.report import FINETUNE_OPTIMISM, _OPTIMISM
    sig = pd.read_csv(RESULTS / "finetune_optimism.csv")
    null = pd.read_csv(RESULTS / "finetune_optimism_null.csv")
    want = dict(signal=sig["optimism_vs_fresh"], null_cv_auc=null["once_cv"], null=null["optimism_vs_fresh"],
                refit_cv_auc=sig["refit_3f"], truth=sig["fresh"], refit_null_cv_auc=null["refit_3f"])
    assert set(_OPTIMISM) == set(want)
    for k, v in want.items():
        assert _OPTIMISM[k] == pytest.approx((v.mean(), v.min(), v.max()), abs=6e-4), k
        assert FINETUNE_OPTIMISM[k] == f"{v.mean():.2f} ({v.min():.2f}-{v.max():.2f})", k
    assert f"{len(sig)} synthetic cohorts" in FINETUNE_OPTIMISM["n"] and len(sig) == len(null)
    assert (
        f"{int(sig['n_train'].iloc[0])} training patients" in FINETUNE_OPTIMISM["n"] and sig["n_train"].nunique() == 1
    )
    assert "5-fold x 4" in FINETUNE_OPTIMISM["protocol"] and "3-fold x 1" in FINETUNE_OPTIMISM["protocol"]


def test_the_words_of_a_fine_tuned_run_quote_mean_range_n_and_protocol():
    from types import SimpleNamespace
    from pe_renal.report import FINETUNE_OPTIMISM, finetune_validation_words
    o = FINETUNE_OPTIMISM
    once = finetune_validation_words(SimpleNamespace(finetune="last", finetune_cv="once", cv_splits=5, cv_repeats=4))
    refit = finetune_validation_words(SimpleNamespace(finetune="last", finetune_cv="refit", cv_splits=5, cv_repeats=4))
    for words, keys in ((once, ("signal", "null_cv_auc")), (refit, ("refit_cv_auc", "truth", "refit_null_cv_auc"))):
        assert (
            all(o[k] in words for k in keys) and o["n"] in words and o["protocol"] in words and "mean (range)" in words
        )
