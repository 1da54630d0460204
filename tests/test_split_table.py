"""The 7:3 patient-level split and Table 1."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pe_renal.data import load_cohort
from pe_renal.split import split_cohort, table_one

from conftest import write_cohort


def paper_table(n=279, n_pe=151, seed=0):
    rng = np.random.default_rng(seed)
    lab = rng.permutation(np.r_[np.ones(n_pe, int), np.zeros(n - n_pe, int)])
    return pd.DataFrame({"patient_id": [f"P{i}" for i in range(n)], "label": lab,
                         "normal_var": rng.normal(50, 5, n) + 3 * lab,
                         "skewed_var": np.exp(rng.normal(0, 1, n)) * (1 + lab),
                         "cat": np.where(rng.random(n) < 0.3 + 0.3 * lab, "yes", "no")})


def test_paper_split_sizes_and_stratification():
    s = split_cohort(paper_table(), seed=42)
    assert s["split"].value_counts().to_dict() == {"train": 195, "test": 84}
    by = s.groupby("split")["label"].mean()
    assert abs(by["train"] - by["test"]) < 0.02  # class balance kept on both sides


def test_split_is_seeded_and_by_patient(tmp_path):
    root = write_cohort(tmp_path / "c", n=20, images_per_patient=2)
    c = load_cohort(root)
    a, b = split_cohort(c, seed=3), split_cohort(c, seed=3)
    pd.testing.assert_frame_equal(a, b)
    assert not a["split"].equals(split_cohort(c, seed=4)["split"])
    # one row per patient: every image of a patient inherits the same side of the split
    per_image = c.images.merge(a[["patient_id", "split"]], on="patient_id")
    assert per_image.groupby("patient_id")["split"].nunique().max() == 1
    assert len(a) == 20


def test_imposed_split_is_honoured(tmp_path):
    root = write_cohort(tmp_path / "c", n=12)
    df = pd.read_csv(root / "clinical.csv")
    df["split"] = ["Train"] * 8 + ["TEST"] * 4
    df.to_csv(root / "clinical.csv", index=False)
    s = split_cohort(load_cohort(root), seed=99)
    assert s["split"].tolist() == ["train"] * 8 + ["test"] * 4


def test_bad_test_size():
    with pytest.raises(Exception, match="test_size"):
        split_cohort(paper_table(), test_size=1.5)


def test_table_one_uses_one_prespecified_rule_and_matches_scipy():
    """Every numeric variable: median [IQR] and the Mann-Whitney U test, a normal one as a skewed one (no Shapiro
    pretest)."""
    d = split_cohort(paper_table(seed=1), seed=1)
    # the two kinds of variable a pretest would have told apart: normal_var passes Shapiro-Wilk in both groups,
    # skewed_var not
    assert all(stats.shapiro(d.loc[d.label == k, "normal_var"]).pvalue > 0.05 for k in (0, 1))
    assert any(stats.shapiro(d.loc[d.label == k, "skewed_var"]).pvalue <= 0.05 for k in (0, 1))
    t = table_one(d, categorical=["cat"]).set_index("variable")
    g = [d.loc[d.label == k] for k in (0, 1)]
    for v in ("normal_var", "skewed_var"):
        assert t.loc[v, "level"] == "median [IQR]" and t.loc[v, "test"] == "Mann-Whitney U"
        p = stats.mannwhitneyu(g[0][v], g[1][v], alternative="two-sided").pvalue
        assert t.loc[v, "p"] == ("<0.001" if p < 0.001 else f"{p:.3f}")
    q1, q2, q3 = np.percentile(g[1]["normal_var"], [25, 50, 75])
    assert t.loc["normal_var", "Preeclampsia (n=151)"] == f"{q2:.1f} [{q1:.1f}, {q3:.1f}]"
    cat = t.loc[["cat"]]
    assert cat["test"].iloc[0] == "Chi-square" and len(cat) == 2
    p = stats.chi2_contingency(pd.crosstab(d["cat"], d["label"]).to_numpy())[1]
    assert cat["p"].iloc[0] == ("<0.001" if p < 0.001 else f"{p:.3f}")
    assert "Normal (n=128)" in t.columns and "Preeclampsia (n=151)" in t.columns
    assert "Mann-Whitney U" in t.attrs["note"] and "no normality pretest" in t.attrs["note"]


def test_table_one_p_value_is_scipys_on_a_small_known_table():
    "A hand-made table with a p-value of 0.0135 (not < 0.001): the printed p is scipy's Mann-Whitney U p, rounded."
    d = pd.DataFrame({"label": [0] * 6 + [1] * 6, "x": [1, 2, 3, 4, 5, 7, 6, 8, 9, 10, 11, 12]})
    p = stats.mannwhitneyu(d.x[:6], d.x[6:], alternative="two-sided").pvalue
    assert 0.001 < p < 0.05
    assert table_one(d).loc[0, "p"] == f"{p:.3f}"
    # a variable that does not differ: a large p
    d["y"] = [1, 2, 3, 4, 5, 6] * 2
    assert float(table_one(d).set_index("variable").loc["y", "p"]) == pytest.approx(1.0, abs=1e-3)


def test_table_one_by_group_and_by_split_summarise_a_variable_the_same_way():
    "The same statistic for a variable in both tables (the issue: 136 ± 19.9 by group vs 139 [118, 154] by split)."
    d = split_cohort(paper_table(seed=3), seed=3)
    for rule, level in (("median", "median [IQR]"), ("mean", "mean ± SD")):
        tg = table_one(d, categorical=["cat"], continuous=rule).set_index("variable")
        ts = table_one(d, by="split", categorical=["cat"], continuous=rule).set_index("variable")
        for v in ("normal_var", "skewed_var"):
            assert tg.loc[v, "level"] == ts.loc[v, "level"] == level
            assert tg.loc[v, "overall"] == ts.loc[v, "overall"]          # the whole cohort, summarised once
        assert ts.attrs["note"].startswith(f"Numeric variables: {level};")


def test_table_one_mean_rule_when_prespecified():
    "continuous='mean': mean ± SD and Welch's t-test for every numeric variable, skewed or not; p equals scipy's."
    d = split_cohort(paper_table(seed=1), seed=1)
    t = table_one(d, categorical=["cat"], continuous="mean").set_index("variable")
    g = [d.loc[d.label == k] for k in (0, 1)]
    for v in ("normal_var", "skewed_var"):
        assert t.loc[v, "level"] == "mean ± SD" and t.loc[v, "test"] == "Welch t-test"
        p = stats.ttest_ind(g[0][v], g[1][v], equal_var=False).pvalue
        assert t.loc[v, "p"] == ("<0.001" if p < 0.001 else f"{p:.3f}")
    x = g[0]["normal_var"]
    assert t.loc["normal_var", "Normal (n=128)"] == f"{x.mean():.1f} ± {x.std(ddof=1):.2f}"
    assert "Welch" in t.attrs["note"] and "Mann-Whitney" not in t.attrs["note"]
    with pytest.raises(Exception, match="continuous"):
        table_one(d, continuous="shapiro")


def test_table_one_fisher_for_small_counts_and_missing_counts():
    d = paper_table(n=30, n_pe=15)
    d["rare"] = ["yes"] * 2 + ["no"] * 28
    d.loc[:4, "normal_var"] = np.nan
    t = table_one(d, categorical=["cat", "rare"]).set_index("variable")
    assert t.loc["rare", "test"].iloc[0] == "Fisher"
    assert t.loc["normal_var", "missing"] == 5
    tab = pd.crosstab(d["rare"], d["label"]).to_numpy()
    assert t.loc["rare", "p"].iloc[0] == f"{stats.fisher_exact(tab)[1]:.3f}"


def test_table_one_by_split_shows_class_balance_first():
    t = table_one(split_cohort(paper_table(), seed=1), by="split", categorical=["cat"])
    assert (
        t["variable"].iloc[0] == "outcome"
        and list(t["level"].iloc[:2]) == ["normal", "preeclampsia"]
        and "Training (n=195)" in t.columns
        and "Test (n=84)" in t.columns
    )


def test_table_one_needs_two_groups():
    with pytest.raises(Exception, match="two groups"):
        table_one(paper_table().assign(label=1))


def test_table_one_by_split_reports_smd_not_p_values():
    d = split_cohort(paper_table(seed=2), seed=5)
    t = table_one(d, by="split", categorical=["cat"])
    assert "SMD" in t.columns and "p" not in t.columns and "test" not in t.columns
    tr, te = d[d.split == "train"], d[d.split == "test"]
    r = t.set_index("variable")
    # numeric: Austin (2009), pooled SD of the two groups
    x, y = tr["normal_var"], te["normal_var"]
    assert r.loc["normal_var", "SMD"] == pytest.approx(
        round((x.mean() - y.mean()) / np.sqrt((x.var() + y.var()) / 2), 3)
    )
    # binary categorical: (p1 - p2) / sqrt((p1 (1 - p1) + p2 (1 - p2)) / 2), sign-free
    p1, p2 = (tr["cat"] == "yes").mean(), (te["cat"] == "yes").mean()
    assert r.loc["cat", "SMD"].iloc[0] == pytest.approx(
        round(abs(p1 - p2) / np.sqrt((p1 * (1 - p1) + p2 * (1 - p2)) / 2), 3)
    )
    assert np.isnan(r.loc["cat", "SMD"].iloc[1])               # one SMD per variable, on its first level
    # the group table keeps its tests
    assert {"p", "test"} <= set(table_one(d, categorical=["cat"]).columns)


def test_smd_known_answers():
    from pe_renal.split import smd_categorical, smd_numeric
    assert smd_numeric([1, 2, 3], [1, 2, 3]) == 0
    assert smd_numeric([0, 2], [1, 3]) == pytest.approx(-1 / np.sqrt(2))
    assert smd_categorical([0.5, 0.5], [0.7, 0.3]) == pytest.approx(0.2 / np.sqrt((0.25 + 0.21) / 2))
    # three levels: the Mahalanobis form; a level split evenly the same way in both groups adds nothing
    assert smd_categorical([0.2, 0.4, 0.4], [0.2, 0.4, 0.4]) == 0
    a, b = np.array([0.5, 0.3, 0.2]), np.array([0.4, 0.3, 0.3])
    T, C = a[1:], b[1:]
    S = np.array([[(T[0] * (1 - T[0]) + C[0] * (1 - C[0])) / 2, -(T[0] * T[1] + C[0] * C[1]) / 2],
                  [-(T[0] * T[1] + C[0] * C[1]) / 2, (T[1] * (1 - T[1]) + C[1] * (1 - C[1])) / 2]])
    assert smd_categorical(a, b) == pytest.approx(np.sqrt((T - C) @ np.linalg.inv(S) @ (T - C)))


def test_random_split_of_a_null_cohort_is_balanced_by_smd():
    "Random halves of one population: SMDs are small (|SMD| < 0.3 at n = 279), whatever a p-value would say."
    for seed in range(5):
        t = table_one(split_cohort(paper_table(seed=seed), seed=seed), by="split", categorical=["cat"])
        assert t["SMD"].dropna().abs().max() < 0.3


def test_table_one_mean_rule_p_is_welchs_not_students():
    """The 'mean' rule's p-value is Welch's, written out here (unequal variances, Welch-Satterthwaite degrees of
    freedom), on groups of unequal size and spread, where Student's pooled t-test gives another p."""
    rng = np.random.default_rng(3)
    a, b = rng.normal(0, 1, 40), rng.normal(0.9, 3, 12)
    d = pd.DataFrame(dict(patient_id=range(52), label=np.r_[np.zeros(40, int), np.ones(12, int)], x=np.r_[a, b]))
    va, vb = a.var(ddof=1) / 40, b.var(ddof=1) / 12
    df = (va + vb) ** 2 / (va ** 2 / 39 + vb ** 2 / 11)
    p = 2 * stats.t.sf(abs(a.mean() - b.mean()) / np.sqrt(va + vb), df)
    got = table_one(d, continuous="mean").set_index("variable").loc["x", "p"]
    assert got == f"{p:.3f}" and got != f"{stats.ttest_ind(a, b).pvalue:.3f}"
