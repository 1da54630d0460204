"""DeLong AUC, CI and paired test equal R's pROC (reference values in tests/reference/proc_delong.csv,
produced by tests/reference/proc_reference.R with pROC 1.18.0). When R and pROC are installed, the
reference is also recomputed live."""
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pe_renal.evaluation import EvaluationError, bootstrap_auc_ci, delong_ci, delong_test

REF = Path(__file__).parent / "reference"
CASES = pd.read_csv(REF / "delong_cases.csv")
PROC = pd.read_csv(REF / "proc_delong.csv", na_values=["NA"]).set_index("case")
TOL = 1e-6


def case(name):
    d = CASES[CASES.case == name]
    return d["y"].to_numpy(), d["s1"].to_numpy(), d["s2"].to_numpy()


@pytest.mark.parametrize("name", PROC.index.tolist())
def test_delong_ci_equals_proc(name):
    y, s1, s2 = case(name)
    ref = PROC.loc[name]
    for s, k in ((s1, "1"), (s2, "2")):
        a = delong_ci(y, s)
        np.testing.assert_allclose(
            [a.auc, a.lo, a.hi], [ref[f"auc{k}"], ref[f"lo{k}"], ref[f"hi{k}"]], atol=TOL, rtol=0
        )
    a90 = delong_ci(y, s1, alpha=0.10)
    np.testing.assert_allclose([a90.lo, a90.hi], [ref["lo1_90"], ref["hi1_90"]], atol=TOL, rtol=0)


@pytest.mark.parametrize("name", PROC.index.tolist())
def test_paired_delong_test_equals_proc(name):
    y, s1, s2 = case(name)
    ref = PROC.loc[name]
    t = delong_test(y, s1, s2)
    np.testing.assert_allclose([t.z, t.p], [ref["z"], ref["p"]], atol=TOL, rtol=0)


def test_reference_covers_the_hard_cases():
    assert (PROC["auc1"] < 0.5).any()                                # AUC below 0.5
    assert (PROC["n"] <= 5).any()                                    # tiny samples
    assert ((PROC["auc1"] == 1) & (PROC["lo1"] == 1)).any()          # perfect separation
    assert (PROC["lo2"] == 0).any() and (PROC["hi1"] == 1).any()     # clipping at both ends
    ties = CASES.groupby("case")["s1"].nunique() / CASES.groupby("case").size()
    assert (ties < 0.1).any()                                        # heavy ties (KNN-like)


def test_negative_control_interval_covers_half():
    y, s1, s2 = case("null_n50")
    a = delong_ci(y, s1)
    assert a.lo < 0.5 < a.hi


def test_permuted_labels_give_auc_near_half():
    rng = np.random.default_rng(0)
    y, s1, _ = case("large_n500")
    aucs = [delong_ci(rng.permutation(y), s1).auc for _ in range(50)]
    assert abs(np.mean(aucs) - 0.5) < 0.02
    assert delong_ci(y, s1).auc > 0.65


def test_bootstrap_ci_is_close_to_delong_on_a_large_sample():
    y, s1, _ = case("large_n500")
    b, d = bootstrap_auc_ci(y, s1, n_boot=2000, seed=3), delong_ci(y, s1)
    assert b.auc == pytest.approx(d.auc, abs=1e-12)
    assert b.lo == pytest.approx(d.lo, abs=0.01) and b.hi == pytest.approx(d.hi, abs=0.01)


@pytest.mark.parametrize("y,s,msg", [
    ([0, 1, 1], [0.2, 0.3], "differ in length"),
    ([1, 1, 1], [0.2, 0.3, 0.4], "only one class"),
    ([0, 1, 1], [0.2, float("nan"), 0.4], "missing or infinite"),
    ([0, 1, 2], [0.2, 0.3, 0.4], "must be 0/1"),
    (["a", "b", "a"], [0.2, 0.3, 0.4], "must be 0/1"),
])
def test_bad_input(y, s, msg):
    with pytest.raises(EvaluationError, match=msg):
        delong_ci(y, s)
    with pytest.raises(EvaluationError, match=msg):
        delong_test(y, s, s)


@pytest.mark.skipif(shutil.which("Rscript") is None, reason="R not installed (apt-get install r-base-core r-cran-proc)")
def test_live_cross_check_with_proc(tmp_path):
    ok = subprocess.run(["Rscript", "-e", "library(pROC)"], capture_output=True)
    if ok.returncode != 0:
        pytest.skip("pROC not installed (apt-get install r-cran-proc)")
    out = tmp_path / "proc.csv"
    subprocess.run(["Rscript", str(REF / "proc_reference.R"), str(REF / "delong_cases.csv"), str(out)], check=True,
                   capture_output=True)
    live = pd.read_csv(out, na_values=["NA"]).set_index("case")
    for name in live.index:
        y, s1, s2 = case(name)
        a, t = delong_ci(y, s1), delong_test(y, s1, s2)
        np.testing.assert_allclose([a.auc, a.lo, a.hi, t.z, t.p],
                                   live.loc[name, ["auc1", "lo1", "hi1", "z", "p"]].astype(float), atol=TOL, rtol=0)
