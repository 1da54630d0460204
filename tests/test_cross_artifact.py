"""Every number a reader quotes is the number of the file it comes from. One walker, `unsourced_numbers`, reads a
results folder's report.html as a reader sees it (its visible text) and ties each number to its source: a table cell
to the same row of the CSV the table names (data-source), a number of the prose to run.json or the summary tables,
Table 2 (the paper-format table) to performance.csv and internal_validation.csv, run.json's intervals and thresholds
to the CSVs, the SHAP caption to performance.csv and the family table. A number added to the report without a source
makes it fail."""
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd

# a decimal number as a reader sees it: not part of a version (0.1.0), an id (deep_0164) or a longer number
DECIMAL = re.compile(r"(?<![\w.])\d+\.\d+(?!\.?\d)")
NUMBER = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?(?!\.?\d)")
PROSE_SOURCES = ("performance.csv", "internal_validation.csv", "shap_importance_family.csv", "gradcam_checks.csv",
                 "sample_size.csv", "lasso_coefficients.csv", "models.csv")


class _Report(HTMLParser):
    "report.html as a reader sees it: the tables that name a source (rows of cell texts) and the prose around them."
    def __init__(self):
        super().__init__()
        self.tables, self.prose, self._skip, self._table, self._row, self._cell = [], [], 0, None, None, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in ("script", "style"):
            self._skip += 1
        elif tag == "table" and "data-source" in a:
            self._table = dict(source=a["data-source"], filter=a.get("data-filter", ""), head=[], rows=[])
        elif self._table is not None and tag == "tr":
            self._row = []
        elif self._row is not None and tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._skip -= 1
        elif self._table is not None and tag in ("td", "th") and self._cell is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif self._table is not None and tag == "tr" and self._row is not None:
            (self._table["rows"] if self._table["head"] else self._table["head"]).append(self._row)
            self._row = None
        elif tag == "table" and self._table is not None:
            self._table["head"] = self._table["head"][0] if self._table["head"] else []
            self.tables.append(self._table)
            self._table = None

    def handle_data(self, data):
        if self._skip:
            return
        if self._cell is not None:
            self._cell.append(data)
        elif self._table is None and data.strip():
            self.prose.append(" ".join(data.split()))


def read_report(path) -> _Report:
    p = _Report()
    p.feed(Path(path).read_text(encoding="utf-8"))
    return p


def _shown(v) -> set:
    "The ways a source value may be shown: as written in its CSV, and a number at the report's 3 decimals / 3 digits."
    out = {str(v)}
    if isinstance(v, (bool, np.bool_)) or v is None:
        return out
    if isinstance(v, (int, float, np.integer, np.floating)) and np.isfinite(v):
        v = abs(float(v))
        out |= {f"{v:.3f}", f"{v:.3g}", f"{v:.2f}", f"{v:.1f}", f"{v:,.0f}", f"{v:.0f}"}
    return out


def _tokens(strings, pattern=NUMBER) -> set:
    return {t.replace(",", "") for s in strings for t in pattern.findall(str(s))}


def _json_values(o):
    if isinstance(o, dict):
        for v in o.values():
            yield from _json_values(v)
    elif isinstance(o, list):
        for v in o:
            yield from _json_values(v)
    else:
        yield o


def _row_tokens(row) -> set:
    return _tokens(s for v in row for s in _shown(v))


def _table_problems(d: Path, t: dict) -> list:
    "Each row of a report table holds only numbers of the same row of its CSV (after the table's filter), in order."
    df = pd.read_csv(d / t["source"])
    for kv in filter(None, t["filter"].split(" ")):
        k, v = kv.split("=", 1)
        df = df[df[k].astype(str) == v]
    if len(df) != len(t["rows"]):
        return [f"{t['source']}: {len(t['rows'])} rows shown, {len(df)} in the file"]
    out = []
    for i, (cells, (_, src)) in enumerate(zip(t["rows"], df.iterrows())):
        have = _row_tokens(src.tolist())
        out += [f"{t['source']} row {i + 1}: {n} (cell {c!r}) is not in the file's row" for c in cells
                for n in _tokens([c]) if n not in have]
    return out


def _prose_problems(d: Path, r: _Report, extra: set) -> list:
    "Every decimal number of the prose is a value of run.json, of a summary table or a constant of the report's words."
    m = json.loads((d / "run.json").read_text())
    have = _tokens(s for v in _json_values(m) for s in _shown(v)) | extra
    for name in PROSE_SOURCES:
        if (d / "tables" / name).is_file():
            have |= _tokens(s for v in pd.read_csv(d / "tables" / name).to_numpy().ravel() for s in _shown(v))
    return [f"prose: {n} in {s[:120]!r} has no source" for s in r.prose for n in _tokens([s], DECIMAL) if n not in have]


def _fmt(v) -> str:
    from pe_renal.report import _NUM
    return _NUM(float(v))


def _cross_file_problems(d: Path) -> list:
    "run.json, performance.csv, internal_validation.csv and the paper-format table quote one another's numbers exactly."
    m = json.loads((d / "run.json").read_text())
    perf, iv = pd.read_csv(d / "tables" / "performance.csv"), pd.read_csv(d / "tables" / "internal_validation.csv")
    fmt = pd.read_csv(d / "tables" / "performance_formatted.csv", dtype=str, keep_default_na=False)
    primary = iv[iv["primary"]].set_index("model")
    out = []
    for model, j in m["internal_validation"].items():
        src = primary.loc[model]
        out += [f"run.json internal_validation {model} {k} {j[k]} != internal_validation.csv {src[k]}"
                for k in ("auc", "lo", "hi") if j[k] is not None and not np.isclose(j[k], src[k], atol=1e-6, rtol=0)]
    for (model, cohort), row in perf.set_index(["model", "cohort"]).iterrows():
        f = fmt[(fmt["model"] == model) & (fmt["cohort"] == cohort)].iloc[0]
        if row["threshold"] != m["model"]["thresholds"][model]:
            out.append(f"performance.csv {model} {cohort} threshold {row['threshold']} != run.json's")
        if f["Threshold"] != f"{row['threshold']:.3g}":
            out.append(f"Table 2 {model} {cohort} threshold {f['Threshold']}")
        auc = _fmt(row["auc"]) + (f" ({_fmt(row['auc_lo'])}-{_fmt(row['auc_hi'])})" if cohort != "train" else "")
        if f["AUC (95% CI)"] != auc:
            out.append(f"Table 2 {model} {cohort} AUC {f['AUC (95% CI)']!r} != {auc!r}")
        if f["n"] != str(row["n"]):
            out.append(f"Table 2 {model} {cohort} n {f['n']} != {row['n']}")
        if cohort == "train":
            src = primary.loc[model]
            want = f"{_fmt(src['auc'])} ({_fmt(src['lo'])}-{_fmt(src['hi'])})"
            if f["Internal validation AUC (95% CI)"] != want:
                out.append(f"Table 2 {model} internal validation {f['Internal validation AUC (95% CI)']!r} != {want!r}")
            out += [f"performance.csv {model} iv_{k} {row['iv_' + k]} != internal_validation.csv {src[k]}"
                    for k in ("auc", "lo", "hi") if not np.isclose(row["iv_" + k], src[k], atol=1e-6, rtol=0)]
        for k, col in (("sensitivity", "Sensitivity"), ("specificity", "Specificity"), ("accuracy", "Accuracy"),
                       ("ppv", "PPV"), ("npv", "NPV"), ("f1", "F1")):
            if not f[col].startswith(_fmt(row[k])):
                out.append(f"Table 2 {model} {cohort} {col} {f[col]!r} != {row[k]}")
            if pd.notna(row[f"{k}_lo"]) and f"({_fmt(row[k + '_lo'])}-{_fmt(row[k + '_hi'])})" not in f[col]:
                out.append(f"Table 2 {model} {cohort} {col} {f[col]!r}: not the interval of performance.csv")
    return out


def _caption_problems(d: Path, r: _Report) -> list:
    "The SHAP section quotes the composite model's test AUC and internal validation, and the family table, exactly."
    perf, iv = pd.read_csv(d / "tables" / "performance.csv"), pd.read_csv(d / "tables" / "internal_validation.csv")
    t = perf[(perf["model"] == "Composite") & (perf["cohort"] == "test")].iloc[0]
    v = iv[iv["primary"] & (iv["model"] == "Composite")].iloc[0]
    text = " ".join(r.prose)
    want = (f"held-out test AUC is {_fmt(t['auc'])} ({_fmt(t['auc_lo'])}-{_fmt(t['auc_hi'])}) and "
            f"internal-validation AUC {_fmt(v['auc'])} ({_fmt(v['lo'])}-{_fmt(v['hi'])})")
    out = [] if want in text else [f"SHAP section does not say {want!r}"]
    for f in pd.read_csv(d / "tables" / "shap_importance_family.csv").itertuples():
        w = (f"{f.family}: mean |net contribution| {f.mean_abs_net_contribution:.3f}, signed mean "
             f"{f.mean_net_contribution:+.3f} ({int(f.n_features)} inputs)")
        if w not in text:
            out.append(f"SHAP family caption does not say {w!r}")
    return out


REPORT_MODULES = ("status", "columns", "quoted", "tripod", "report")   # the modules whose words the report quotes


def report_constants() -> set:
    """Numbers written into the report's wording itself (criteria, rules): the template's and the report modules'
    literals, and the benchmark figures the report quotes (read from the rows shipped with the package)."""
    import importlib
    from pe_renal.quoted import FINETUNE_OPTIMISM
    mods = [importlib.import_module(f"pe_renal.{m}") for m in REPORT_MODULES]
    tpl = Path(mods[-1].__file__).parent / "templates" / "report.html.j2"
    texts = [tpl.read_text(encoding="utf-8"), *(Path(m.__file__).read_text(encoding="utf-8") for m in mods)]
    return _tokens(texts + list(FINETUNE_OPTIMISM.values()), DECIMAL)


def unsourced_numbers(d) -> list:
    "Every number of the report, run.json and the paper-format table that is not its source's: [] when all agree."
    d = Path(d)
    r = read_report(d / "report.html")
    sources = {t["source"] for t in r.tables}
    assert {"tables/performance_formatted.csv", "tables/internal_validation.csv", "tables/table1_by_group.csv",
            "tables/table1_by_split.csv", "tables/shap_importance_family.csv"} <= sources, sources
    out = [p for t in r.tables for p in _table_problems(d, t)]
    return out + _prose_problems(d, r, report_constants()) + _cross_file_problems(d) + _caption_problems(d, r)


def test_every_number_of_the_report_and_run_json_is_its_source_files(study_results):
    assert unsourced_numbers(study_results[3]) == []


def test_a_number_added_to_the_report_without_a_source_is_found(study_results, tmp_path):
    "Negative controls: a copy of the report with a changed interval, an added sentence, a changed Table 1 cell."
    import shutil
    d = tmp_path / "r"
    shutil.copytree(study_results[3], d, ignore=shutil.ignore_patterns("cohort", "figures"))
    html = (d / "report.html").read_text(encoding="utf-8")
    perf = pd.read_csv(d / "tables" / "performance.csv")
    t = perf[(perf["model"] == "Composite") & (perf["cohort"] == "test")].iloc[0]
    shown = f"({_fmt(t['auc_lo'])}-{_fmt(t['auc_hi'])})"
    assert shown in html
    bad = shown.replace(_fmt(t["auc_lo"]), f"{max(t['auc_lo'] - 0.0713, 0.0005):.3f}")
    for old, new in ((shown, bad), ("<h2>", "<p>A pooled AUC of 0.6667 was seen.</p><h2>")):
        (d / "report.html").write_text(html.replace(old, new, 1), encoding="utf-8")
        problems = unsourced_numbers(d)
        assert problems, (old, new)
    t1 = "tables/table1_by_group.csv"
    row = html[html.index(f'data-source="{t1}"'):]
    m = re.search(r"<td>(\d+) \(", row)
    bad = html.replace(row, row.replace(m.group(0), f"<td>{int(m.group(1)) + 1} (", 1))
    (d / "report.html").write_text(bad, encoding="utf-8")
    assert any(t1 in p for p in unsourced_numbers(d))


def test_table1_counts_every_patient_by_group_and_by_split(study_results):
    "Study-level Table 1 describes the whole cohort: its headings and every categorical level count all patients."
    from conftest import PARITY_LEVELS
    _, cohort, _, out = study_results
    clin = pd.read_csv(cohort / "clinical.csv")
    split = pd.read_csv(out / "split.csv").set_index("patient_id")["split"]
    clin["split"] = clin["patient_id"].map(split)
    assert clin["split"].notna().all()
    m = json.loads((out / "run.json").read_text())
    assert m["summary"]["patients"] == len(clin) and m["summary"]["events"] == (clin["group"] == "preeclampsia").sum()
    for k, g in clin.groupby("split"):
        assert m["summary"]["split"][k] == dict(patients=len(g), events=int((g["group"] == "preeclampsia").sum()))
    for name, by, heads in (("table1_by_group", "group", {"normal": "Normal", "preeclampsia": "Preeclampsia"}),
                            ("table1_by_split", "split", {"train": "Training", "test": "Test"})):
        t = pd.read_csv(out / "tables" / f"{name}.csv")
        for key, head in heads.items():
            col = f"{head} (n={(clin[by] == key).sum()})"
            assert col in t.columns, (name, col, list(t.columns))
            par = t[t["variable"] == "parity"].set_index("level")
            assert set(par.index) == set(PARITY_LEVELS)
            for level in PARITY_LEVELS:
                n = int(((clin[by] == key) & (clin["parity"] == level)).sum())
                assert par.loc[level, col].startswith(f"{n} ("), (name, level, par.loc[level, col], n)
                assert par.loc[level, "overall"].startswith(f"{(clin['parity'] == level).sum()} (")
    text = " ".join(read_report(out / "report.html").prose)
    s = m["summary"]
    assert (f"{s['patients']} patients ({s['events']} with preeclampsia, {s['patients'] - s['events']} without), "
            f"{s['images']} images") in text
    assert len(pd.read_csv(cohort / "images.csv")) == s["images"]
    tr, te = s["split"]["train"], s["split"]["test"]
    assert (f"training {tr['patients']} patients ({tr['events']} with preeclampsia); test {te['patients']} patients "
            f"({te['events']} with preeclampsia)") in text


def test_the_incorporation_bias_of_a_kept_outcome_defining_column_is_in_the_report(study_results):
    "The shared study keeps an outcome-defining column as a predictor: run.json, predictors.csv and the report say so."
    from conftest import KEPT_OUTCOME_DEFINING as col
    out = study_results[3]
    m = json.loads((out / "run.json").read_text())
    assert col in m["summary"]["clinical_predictors"] and col in m["summary"]["outcome_defining"]
    assert len(m["summary"]["incorporation_bias"]) == 1 and col in m["summary"]["incorporation_bias"][0]
    assert any("Incorporation bias" in w and col in w for w in m["warnings"])
    pred = pd.read_csv(out / "tables" / "predictors.csv").set_index("column")
    assert pred.loc[col, "role"] == "outcome-defining predictor"
    assert (pred["role"] == "outcome-defining predictor").sum() == 1
    text = " ".join(read_report(out / "report.html").prose)
    said = f"Incorporation bias: '{col}' is used as a predictor but helps define the outcome"
    top = text[:text.index("1. Cohort")]                                         # the run's warnings, at the top
    methods = text[text.index("Candidate clinical predictors"):text.index("TRIPOD+AI checklist")]  # by the predictors
    for part in (top, methods):
        assert said in part and "performance is optimistic (incorporation bias)" in part


def test_the_report_describes_the_interval_internal_validation_csv_holds(study_results):
    """The primary internal-validation CI is mean ± t sqrt(v_ic + v_nb) (the method column says so): the report's words
    say the same, and the interval is wider than both of its parts, as a sum of variances is (not the wider of them)."""
    out = study_results[3]
    iv = pd.read_csv(out / "tables" / "internal_validation.csv")
    primary = iv[iv["primary"] & iv["same_as"].isna()]
    assert primary["method"].str.contains("sqrt(v_ic + v_nb)", regex=False).all()
    assert ((primary["lo"] < primary[["lo_ic", "lo_nb"]].min(axis=1)) | (primary["lo"] == 0)).all()
    text = " ".join(read_report(out / "report.html").prose)
    para = text[text.index("Primary: repeated stratified"):text.index("Selection effect")]
    assert "sqrt(v_ic + v_nb)" in para and "added to the corrected repeated-CV variance" in para
    assert "wider of" not in para
