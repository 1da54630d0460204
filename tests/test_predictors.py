"""Which clinical columns are predictors, which are excluded and why, and which define the outcome (cohort.toml): the
Cohort's lists, the incorporation-bias warning, and the model inputs each column becomes."""
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pe_renal.core import CohortError
from pe_renal.data import IncorporationBias, load_cohort, predictor_summary
from pe_renal.split import split_cohort

from conftest import write_cohort

PE_RENAL = str(Path(sys.executable).with_name("pe-renal"))
REASON = "defines the outcome (diagnostic criterion of preeclampsia)"


def cohort_with_bp(root, toml=None, n=12):
    "write_cohort's cohort (age, creatinine, parity) plus a blood-pressure column, and the given cohort.toml."
    write_cohort(root, n=n)
    df = pd.read_csv(root / "clinical.csv")
    df["sbp"] = np.arange(110, 110 + 3 * n, 3)
    df.to_csv(root / "clinical.csv", index=False)
    if toml is not None:
        (root / "cohort.toml").write_text(toml)
    return root


def load_quietly(root, **kw):
    "load_cohort that fails on any incorporation-bias warning."
    with warnings.catch_warnings():
        warnings.simplefilter("error", IncorporationBias)
        return load_cohort(root, **kw)


def test_exclude_as_a_list_still_works(tmp_path):
    "Backward compatible: exclude = [...] excludes, with a reason that says none was given."
    c = load_quietly(cohort_with_bp(tmp_path / "c", '[clinical]\nexclude = ["sbp"]\n'))
    assert c.features == ["age", "creatinine", "parity"] and c.candidates == ["age", "creatinine", "parity", "sbp"]
    assert (
        c.excluded == {"sbp": "no reason given in cohort.toml"}
        and c.outcome_defining == []
        and c.incorporation_bias == []
    )


def test_exclude_table_gives_reasons_and_outcome_defining_excluded_means_no_warning(tmp_path):
    toml = ('[clinical]\ncategorical = ["parity"]\noutcome_defining = ["sbp"]\n\n'
            f'[clinical.exclude]\nsbp = "{REASON}"\ncreatinine = "measured after the diagnosis"\n')
    c = load_quietly(cohort_with_bp(tmp_path / "c", toml))
    assert c.features == ["age", "parity"]
    assert c.excluded == {"creatinine": "measured after the diagnosis", "sbp": REASON}
    assert c.outcome_defining == ["sbp"] and c.outcome_defining_predictors == [] and c.incorporation_bias == []
    assert f"sbp ({REASON})" in c.summary()
    # the inline-table spelling reads the same
    root = cohort_with_bp(tmp_path / "d", f'[clinical]\noutcome_defining = ["sbp"]\nexclude = {{sbp = "{REASON}"}}\n')
    assert load_quietly(root).excluded == {"sbp": REASON}
    # an outcome-defining column excluded by the list: the reason says that it defines the outcome
    root = cohort_with_bp(tmp_path / "e", '[clinical]\noutcome_defining = ["sbp"]\nexclude = ["sbp"]\n')
    assert "defines the outcome" in load_quietly(root).excluded["sbp"]


def test_outcome_defining_predictor_warns_naming_the_column_and_what_to_do(tmp_path):
    root = cohort_with_bp(
        tmp_path / "c", '[clinical]\noutcome_defining = ["sbp", "creatinine"]\nexclude = ["creatinine"]\n'
    )
    with pytest.warns(IncorporationBias) as w:
        c = load_cohort(root)
    msgs = [str(x.message) for x in w if issubclass(x.category, IncorporationBias)]
    assert len(msgs) == 1
    m = msgs[0]
    assert "cohort.toml" in m and "'sbp'" in m and "'creatinine'" not in m           # the excluded one is not named
    assert "incorporation bias" in m and "Exclude it" in m and "keep it knowingly" in m
    assert c.features == ["age", "parity", "sbp"] and c.outcome_defining_predictors == ["sbp"]
    assert len(c.incorporation_bias) == 1 and "'sbp'" in c.incorporation_bias[0]
    assert "OUTCOME-DEFINING PREDICTOR(S) (incorporation bias): sbp" in c.summary()
    # the columns a model uses (predict): still said, without advice to edit a cohort.toml the model no longer reads
    with pytest.warns(IncorporationBias, match="the model uses it"):
        load_cohort(root, features=["age", "sbp"], require_label=False)


def test_no_cohort_toml_no_warning(cohort_dir):
    "Nothing declared: every column a predictor, nothing excluded, no warning (negative control)."
    c = load_quietly(cohort_dir)
    assert (
        c.excluded == {} and c.outcome_defining == [] and c.features == c.candidates == ["age", "creatinine", "parity"]
    )


@pytest.mark.parametrize(
    "toml, says",
    [
        (
            '[clinical]\noutcome_defining = ["sbp_mmHg"]\n',
            ["cohort.toml", "outcome_defining", "'sbp_mmHg'", "Columns available"],
        ),
        ('[clinical]\noutcome_defining = "sbp"\n', ["cohort.toml", "outcome_defining", "list of column names"]),
        ('[clinical]\nexclude = {sbp = 1}\n', ["cohort.toml", "sbp = 1", "reason", "in quotes"]),
        (
            '[clinical.exclude]\nsbp = "defines the outcome"\ncategorical = ["parity"]\n',
            ["[clinical.exclude]", "categorical", "last"],
        ),
        ('[clinical]\nexclude = {bp = "defines the outcome"}\n', ["cohort.toml", "exclude", "'bp'"]),
        ('[clinical]\nfeatures = ["age", "sbp"]\nexclude = ["sbp"]\n', ["cohort.toml", "'sbp'", "features", "exclude"]),
    ],
)
def test_bad_outcome_and_exclude_keys_are_named(tmp_path, toml, says):
    root = cohort_with_bp(tmp_path / "c", toml)
    with pytest.raises(CohortError) as e:
        load_cohort(root)
    for s in says:
        assert s in str(e.value), (s, str(e.value))


def test_features_list_excludes_the_rest_with_a_reason(tmp_path):
    c = load_quietly(cohort_with_bp(tmp_path / "c", '[clinical]\nfeatures = ["age", "parity"]\n'))
    assert c.excluded == {"creatinine": "not listed under [clinical] features in cohort.toml",
                          "sbp": "not listed under [clinical] features in cohort.toml"}


def test_predictor_summary_counts_the_inputs_the_clinical_model_gets(tmp_path):
    """Known answer from scikit-learn: the inputs summed over the predictors equal the width of the models' clinical
    preprocessor fitted on the training patients (parity one-hot: two inputs; a level absent from training: none)."""
    from pe_renal.models import clinical_preprocessor
    root = cohort_with_bp(tmp_path / "c", '[clinical]\noutcome_defining = ["sbp"]\n', n=30)
    df = pd.read_csv(root / "clinical.csv")
    df["site"] = ["A", "B", "C"] * 10
    df.loc[df.index[-1], "site"] = "D"                                         # one patient of site D ...
    df["split"] = ["train"] * 24 + ["test"] * 6                                # ... in the test set only
    df.loc[3, "creatinine"] = np.nan
    df.to_csv(root / "clinical.csv", index=False)
    with pytest.warns(IncorporationBias):
        c = load_cohort(root)
    s = split_cohort(c)
    ps = predictor_summary(c, s).set_index("column")
    assert ps["role"].to_dict() == {"age": "predictor", "creatinine": "predictor", "parity": "predictor",
                                    "sbp": "outcome-defining predictor", "site": "predictor"}
    assert ps["kind"].to_dict() == {
        "age": "numeric",
        "creatinine": "numeric",
        "parity": "categorical",
        "sbp": "numeric",
        "site": "categorical",
    }
    assert ps["inputs"].to_dict() == {"age": 1, "creatinine": 1, "parity": 2, "sbp": 1, "site": 3}
    train = s[s["split"] == "train"]
    cat = [x for x in c.categorical if x in c.features]
    width = clinical_preprocessor(c.numeric, cat).fit(train[c.features]).transform(train[c.features]).shape[1]
    assert ps["inputs"].sum() == width == 8
    # the cohort's own table imposes this split: the same count; counted on all patients instead, site D is a fourth
    # level
    assert predictor_summary(c).set_index("column").loc["site", "inputs"] == 3
    assert predictor_summary(c, c.clinical.drop(columns="split")).set_index("column").loc["site", "inputs"] == 4
    assert "5 used as predictors -> 8 model inputs" in predictor_summary(c, s).attrs["note"]
    # excluded: no input, the reason given
    (root / "cohort.toml").write_text(f'[clinical]\noutcome_defining = ["sbp"]\n[clinical.exclude]\nsbp = "{REASON}"\n')
    ps = predictor_summary(load_quietly(root), s).set_index("column")
    assert ps.loc["sbp", ["role", "reason", "inputs"]].tolist() == ["excluded", REASON, 0]


def test_demo_cohort_declares_and_excludes_the_diagnostic_criteria(tmp_path):
    """The demo: blood pressures and 24-h urine protein are outcome-defining and excluded with the reason; 9 columns,
    10 inputs."""
    from pe_renal.synthetic import EXCLUDE_REASON, OUTCOME_DEFINING, make_cohort
    root = make_cohort(tmp_path / "demo", n=12, seed=0, n_jobs=1)
    c = load_quietly(root, check_images=False)
    assert OUTCOME_DEFINING == ["sbp_mmHg", "dbp_mmHg", "urine_protein_24h_g"] == c.outcome_defining
    assert c.excluded == {col: EXCLUDE_REASON for col in OUTCOME_DEFINING} and c.incorporation_bias == []
    ps = predictor_summary(c)
    assert (ps["role"] == "predictor").sum() == 9 and ps["inputs"].sum() == 10
    # keeping urine protein (its line deleted from [clinical.exclude]) brings the warning
    toml = (root / "cohort.toml").read_text()
    (root / "cohort.toml").write_text(
        "\n".join(ln for ln in toml.splitlines() if not ln.startswith("urine_protein")) + "\n"
    )
    with pytest.warns(IncorporationBias, match="'urine_protein_24h_g'"):
        assert "urine_protein_24h_g" in load_cohort(root, check_images=False).features


def test_check_prints_the_warning(tmp_path):
    "`pe-renal check` passes (exit 0) and says the warning on stderr, naming the column."
    root = cohort_with_bp(tmp_path / "c", '[clinical]\noutcome_defining = ["sbp"]\n', n=20)
    r = subprocess.run([PE_RENAL, "check", str(root), "--cv-splits", "3"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "'sbp'" in r.stderr and "incorporation bias" in r.stderr and "OUTCOME-DEFINING" in r.stdout
