"""Riley et al.'s minimum sample size (pe_renal.samplesize): pmsampsize's known answers, the C-statistic to Cox-Snell R²
conversion against a simulation of its own, properties the formulas must have, and what `pe-renal samplesize` and
`pe-renal check` print."""
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st
from scipy.special import log_expit
from scipy.stats import norm

from pe_renal.cli import main
from pe_renal.core import PeRenalError
from pe_renal.samplesize import (candidate_parameters, max_r2cs, null_loglik, r2cs_from_cstat, r2cs_from_nagelkerke,
                                 riley_sample_size, sample_size_table, sample_size_words, supported_parameters)

# pmsampsize's own tests (S = 0.9): (R²_CS, parameters, prevalence) -> criteria 1-3, n, events per candidate parameter
KNOWN = [((0.288, 24, 0.174), (623, 662, 221), 662, 4.80), ((0.55, 24, 0.174), (255, 532, 221), 532, 3.86),
         ((0.288, 36, 0.174), (934, 992, 221), 992, 4.79), ((0.288, 24, 0.25), (623, 590, 289), 623, 6.49)]


@pytest.mark.parametrize("given_,criteria,n,epp", KNOWN)
def test_known_answers(given_, criteria, n, epp):
    r2, p, phi = given_
    s = riley_sample_size(p, phi, r2cs=r2)
    assert tuple(s.criteria["n"]) == criteria
    assert s.n == n and round(s.epp, 2) == epp and s.events == math.ceil(n * phi - 1e-9)


def test_worked_example_intermediates():
    s = riley_sample_size(24, 0.174, r2cs=0.288)
    assert round(s.max_r2cs, 3) == 0.603 and round(s.shrinkage_c2, 3) == 0.905 and s.events == 116


def test_nagelkerke_input_is_the_same_r2():
    assert riley_sample_size(24, 0.174, r2_nagelkerke=0.288 / max_r2cs(0.174)).criteria["n"].tolist() == [623, 662, 221]
    assert r2cs_from_nagelkerke(1 - 1e-12, 0.3) == pytest.approx(max_r2cs(0.3))


def test_cstat_known_answer():
    "C 0.89, prevalence 0.174: R²_CS 0.2910 (pmsampsize's simulation: 0.2908); rounded to 0.291, criterion 2 asks 660."
    assert r2cs_from_cstat(0.89, 0.174) == pytest.approx(0.29095, abs=5e-5)
    s = riley_sample_size(24, 0.174, cstat=0.89)
    assert s.r2cs == 0.291 and s.criteria["n"][1] == 660


def _simulated(c, phi, n=200_000, seed=1):
    "Riley et al.'s simulation (binormal linear predictor, logistic model by maximum likelihood): R²_CS and the AUC."
    rng = np.random.default_rng(seed)
    y = rng.random(n) < phi
    x = rng.standard_normal(n) + math.sqrt(2) * norm.ppf(c) * y
    X, b = np.c_[np.ones(n), x], np.zeros(2)
    for _ in range(30):
        p = 1 / (1 + np.exp(-X @ b))
        b += np.linalg.solve(X.T @ (X * (p * (1 - p))[:, None]), X.T @ (y - p))
    ll = np.mean(np.where(y, log_expit(X @ b), log_expit(-(X @ b))))
    from sklearn.metrics import roc_auc_score
    return 1 - math.exp(-2 * (ll - null_loglik(y.mean()))), roc_auc_score(y, x)


@pytest.mark.parametrize("c,phi", [(0.89, 0.174), (0.7, 0.5), (0.8, 0.1), (0.95, 0.3)])
def test_cstat_conversion_matches_a_simulation(c, phi):
    r2, auc = _simulated(c, phi)
    assert auc == pytest.approx(c, abs=0.005)                      # the simulated model has the C asked for ...
    assert r2cs_from_cstat(c, phi) == pytest.approx(r2, abs=0.004)  # ... and the quadrature its R²


def test_cstat_conversion_negative_control():
    "No discrimination, no R²: the conversion goes to 0 as C goes to 0.5, and 0.5 itself is refused."
    assert r2cs_from_cstat(0.5001, 0.2) < 1e-6
    with pytest.raises(PeRenalError, match="no discrimination"):
        r2cs_from_cstat(0.5, 0.2)
    with pytest.raises(PeRenalError, match="--cstat"):
        r2cs_from_cstat(1.0, 0.2)


@settings(max_examples=60, deadline=None)
@given(c=st.floats(0.52, 0.98), phi=st.floats(0.02, 0.98))
def test_cstat_conversion_properties(c, phi):
    r = r2cs_from_cstat(c, phi)
    assert 0 < r < max_r2cs(phi)
    assert r2cs_from_cstat(c + 0.01, phi) > r                       # more discrimination, more explained
    assert r2cs_from_cstat(c, 1 - phi) == pytest.approx(r, rel=1e-9)  # the outcome's coding does not matter
    assert r == pytest.approx(r2cs_from_cstat(c, phi, nodes=200), abs=1e-8)       # the quadrature has converged


@settings(max_examples=60, deadline=None)
@given(p=st.integers(1, 500), phi=st.floats(0.03, 0.97), share=st.floats(0.05, 0.95), s=st.floats(0.75, 0.95))
def test_criteria_properties(p, phi, share, s):
    r2 = share * min(max_r2cs(phi), s) * 0.99
    a = riley_sample_size(p, phi, r2cs=r2, shrinkage=s)
    assert a.n == a.criteria["n"].max() and a.epp == pytest.approx(a.n * phi / p)
    more = riley_sample_size(p + 1, phi, r2cs=r2, shrinkage=s)
    assert (more.criteria["n"][:2] >= a.criteria["n"][:2]).all() and more.criteria["n"][2] == a.criteria["n"][2]
    better = riley_sample_size(p, phi, r2cs=r2 * 1.05, shrinkage=s)
    assert (better.criteria["n"][:2] <= a.criteria["n"][:2]).all()  # a model that explains more needs fewer patients
    if s < 0.94:
        assert riley_sample_size(p, phi, r2cs=r2, shrinkage=s + 0.01).criteria["n"][0] >= a.criteria["n"][0]


@settings(max_examples=60, deadline=None)
@given(n=st.integers(20, 20_000), phi=st.floats(0.05, 0.95), c=st.floats(0.6, 0.95))
def test_supported_parameters_is_the_inverse(n, phi, c):
    k = supported_parameters(n, phi, cstat=c)
    if k:
        assert riley_sample_size(k, phi, cstat=c).n <= n
    assert riley_sample_size(k + 1, phi, cstat=c).n > n
    k12 = supported_parameters(n, phi, cstat=c, overall_risk=False)
    assert k12 >= k and (k12 == k or n < riley_sample_size(1, phi, cstat=c).criteria["n"][2])


@pytest.mark.parametrize("kw,msg", [(dict(), "exactly one"), (dict(r2cs=0.2, cstat=0.8), "exactly one"),
                                    (dict(r2cs=0.7), "largest Cox-Snell"),
                                    (dict(r2cs=0.2, prevalence=1.5), "--prevalence"),
                                    (dict(r2cs=0.2, parameters=0), "--parameters"),
                                    (dict(r2cs=0.2, shrinkage=1), "--shrinkage"),
                                    (dict(r2cs=0.288, shrinkage=0.2), "--shrinkage 0.2")])
def test_bad_inputs_are_named(kw, msg):
    args = dict(parameters=24, prevalence=0.174) | kw
    with pytest.raises(PeRenalError, match=msg):
        riley_sample_size(**args)


def test_parameters_count_everything_screened():
    pred = pd.DataFrame(dict(column=["age", "parity", "centre", "bp"],
                             role=["predictor", "predictor", "excluded", "predictor"],
                             kind=["numeric", "categorical", "categorical", "numeric"], inputs=[1, 3, 0, 0]))
    # age 1 + parity 3 - 1 + bp 0 (empty in training) + centre excluded
    assert candidate_parameters(pred, deep=2048) == dict(deep=2048, clinical=3, total=2051)


def test_study_table_and_sentence():
    tab = sample_size_table(195, 106, dict(deep=2048, clinical=9, total=2057))
    assert (tab["n_required"] > 10_000).all() and not tab["enough"].any() and (tab["supported_parameters"] == 0).all()
    assert "high risk of overfitting" in sample_size_words(tab) and "382" in sample_size_words(tab)
    big = sample_size_table(3000, 900, dict(deep=0, clinical=10, total=10))
    assert big["enough"].all() and sample_size_words(big).endswith("enough.")


def test_cli_samplesize_prints_the_criteria(capsys):
    assert main(["samplesize", "--r2cs", "0.288", "--parameters", "24", "--prevalence", "0.174"]) == 0
    out = capsys.readouterr().out
    assert [l.split("n = ")[1].split()[0] for l in out.splitlines() if "criterion" in l] == ["623", "662", "221"]
    assert "Minimum sample size: 662 patients, 116 with the outcome, 4.80 events per candidate parameter." in out


def test_cli_samplesize_cstat_and_errors(capsys):
    assert main(["samplesize", "--cstat", "0.89", "--parameters", "24", "--prevalence", "0.174"]) == 0
    assert "Cox-Snell R² 0.291 (from an anticipated C-statistic of 0.89" in capsys.readouterr().out
    assert main(["samplesize", "--parameters", "24", "--prevalence", "0.174"]) == 2
    assert "give exactly one anticipated performance" in capsys.readouterr().err
    assert main(["samplesize", "--r2cs", "0.2", "--parameters", "24", "--prevalence", "0"]) == 2
    assert "--prevalence" in capsys.readouterr().err


def test_cli_check_prints_the_sample_size_section(tmp_path, capsys):
    from conftest import write_cohort
    assert main(["check", str(write_cohort(tmp_path / "c", n=40)), "--deep-features", "512", "--cstat", "0.8"]) == 0
    out = capsys.readouterr().out
    # write_cohort: age and creatinine (numeric, 1 each) + parity (2 levels, 1): 3 clinical inputs
    assert "candidate parameters: 515 = 512 deep features offered to the LASSO + 3 clinical inputs" in out
    assert "anticipated C 0.8 " in out and "the cohort supports 0 candidate parameters" in out
    assert "high risk of overfitting" in out


def test_run_writes_the_table_the_report_section_and_tripod_item_10(study_results):
    "The shared small study: tables/sample_size.csv recomputed from the run's own split, predictors and deep features."
    import html
    import json
    d, cohort, cfg, out = study_results
    tab, m = pd.read_csv(out / "tables" / "sample_size.csv"), json.loads((out / "run.json").read_text())
    train = pd.read_csv(out / "split.csv").query("split == 'train'")
    clinical = candidate_parameters(pd.read_csv(out / "tables" / "predictors.csv"), deep=0)["clinical"]
    assert tab["cstat"].tolist() == [0.7, 0.8, 0.9] and (tab["n"] == len(train)).all()
    assert (tab["events"] == train["label"].sum()).all()
    assert m["summary"]["deep_candidates"] == 512 and (tab["deep"] == 512).all()
    assert (tab["clinical"] == clinical).all() and (tab["parameters"] == 512 + clinical).all()
    for r in tab.itertuples():
        s = riley_sample_size(int(r.parameters), r.events / r.n, cstat=r.cstat)
        assert (s.criteria["n"].tolist(), s.n) == ([r.criterion_1, r.criterion_2, r.criterion_3], r.n_required)
        assert r.supported_parameters == supported_parameters(r.n, r.events / r.n, cstat=r.cstat) and not r.enough
    z = m["summary"]["sample_size"]
    assert z["parameters"] == 512 + clinical
    assert z["required"] == {f"{c:g}": int(n) for c, n in zip(tab["cstat"], tab["n_required"])}
    page = html.unescape((out / "report.html").read_text())
    assert "Is the cohort big enough? Sample size" in page and z["sentence"] in page
    assert 'data-source="tables/sample_size.csv"' in page
    tripod = pd.read_csv(out / "tables" / "tripod_ai.csv", dtype=str).set_index("item number")
    item = tripod.loc["10", "what this run reports"]
    assert "Riley et al. (BMJ 2020)" in item and f"{512 + clinical:,} candidate parameters" in item
    assert z["sentence"] in item
    assert "sample_size.csv: Riley et al." in (out / "tables" / "README.txt").read_text()


@pytest.mark.slow
def test_learning_stage_on_a_null_cohort_is_flat_and_reported(study_results, tmp_path, monkeypatch):
    """`run --learning-curve`'s stage on simulated features without signal: every point's interval covers 0.5; its
    tables, figures and words reach the report of a results folder (the shared small run, copied). Kept small: 3-fold
    CV (the run's `cv_splits`) and 8 bootstrap refits for the instability (the run's INSTABILITY_BOOT, 50, patched:
    the stage must read it, as the n_boot column shows)."""
    import html
    import json
    import shutil
    from pe_renal import samplesize
    from pe_renal.models import demo_data
    from pe_renal.report import render_report
    from pe_renal.stages import ModelStage, learning_stage
    from pe_renal.study import StudyConfig
    out = tmp_path / "res"
    shutil.copytree(study_results[3], out)
    assert samplesize.INSTABILITY_BOOT == 50
    monkeypatch.setattr(samplesize, "INSTABILITY_BOOT", 8)
    data = demo_data(n=140, effect=0, n_features=40, seed=3)
    ms = ModelStage(data, {}, {}, None, dict(classifier="knn", seed=42, lasso={"rule": "min", "method": "lasso"}), [])
    st_ = learning_stage(ms, StudyConfig(dpi=60, cv_splits=3), out)
    curve = pd.read_csv(out / "tables" / "learning_curve.csv")
    assert ((curve["lo"] <= 0.5) & (0.5 <= curve["hi"])).all(), curve
    assert sorted(set(curve["fraction"])) == [0.4, 0.6, 0.8, 1.0] and set(curve["n_folds"]) == {2 * 3}, curve
    assert set(curve["model"]) == {"DL", "Clinical", "Composite"}
    mape = pd.read_csv(out / "tables" / "prediction_instability.csv")
    assert (mape["mape"] > 0).all() and (mape["n_boot"] == 8).all()
    assert "includes 0.5" in st_.words
    m = json.loads((out / "run.json").read_text())
    m["summary"]["learning"] = st_.words
    (out / "run.json").write_text(json.dumps(m))
    page = html.unescape(render_report(out).read_text())
    assert "Learning curve and prediction instability" in page and st_.words in page
    assert 'alt="learning_curve"' in page and 'alt="prediction_instability"' in page
