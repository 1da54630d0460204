"""Warnings are errors in the tests (pyproject.toml): the figures pe_renal draws raise none, with today's Matplotlib."""
import warnings

import numpy as np
import pandas as pd


def test_internal_validation_figure_raises_no_warning():
    "The fold-AUC boxes (matplotlib's boxplot: seaborn's passes the deprecated `vert`); a model with no folds as NA."
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from pe_renal.internal import CVResult, plot_internal_validation
    rng = np.random.default_rng(0)
    folds = pd.DataFrame(dict(model=["DL"] * 5 + ["Clinical"] * 5, auc=rng.uniform(0.5, 0.9, 10), repeat=0,
                              fold=list(range(5)) * 2))
    summary = pd.DataFrame(dict(model=["DL", "Clinical", "Composite"]))
    summary.attrs.update(n_splits=5, n_repeats=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = plot_internal_validation(CVResult(folds, summary))
    fig = getattr(fig, "figure", fig)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["DL", "Clinical", "Composite"]
    assert "NA" in [t.get_text() for t in ax.texts]                       # Composite: no fold AUCs
    med = [l.get_ydata()[0] for l in ax.lines if l.get_color() == "0.2"]  # the medians drawn, at the models' positions
    want = [folds.loc[folds.model == m, "auc"].median() for m in ("DL", "Clinical")]
    np.testing.assert_allclose(med, want + [np.nan])
    plt.close(fig)


def test_every_module_imports_under_warnings_as_errors():
    """`python -W error` imports every pe_renal module and the libraries they use where they use them (shap through
    `import_shap`, whose colour maps raise a Matplotlib deprecation notice at import); a bare `import shap` fails
    there."""
    import subprocess
    import sys

    mods = [
        "core",
        "settings",
        "data",
        "synthetic",
        "features",
        "finetune",
        "lasso",
        "models",
        "samplesize",
        "evaluation",
        "gradcam",
        "shap",
        "report",
        "predict",
        "validate",
        "valsize",
        "external",
        "study",
        "cli",
    ]
    code = ("import importlib\n" + "".join(f"importlib.import_module('pe_renal.{m}')\n" for m in mods)
            + "from pe_renal.shap import import_shap\nimport_shap()\n")
    r = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]


def test_every_warning_pe_renal_raises_is_a_finding():
    """One rule for pe_renal's own warnings: each is a `PeRenalWarning` (a finding about the data or a fit, shown to the
    user on purpose), so the tests' warnings-as-errors filter leaves them to `pytest.warns` and catches every other one
    (a library's deprecation, numpy's runtime warnings). A `warnings.warn` without that category fails here."""
    import ast
    import inspect
    from pathlib import Path
    import pe_renal
    import pe_renal.core as core
    from pe_renal.core import PeRenalWarning
    import pe_renal.data
    import pe_renal.lasso
    import pe_renal.models   # the modules that define subclasses
    mods = {m: getattr(pe_renal, m) for m in ("core", "data", "lasso", "models")}
    findings = {n for m in mods.values() for n, v in vars(m).items()
                if inspect.isclass(v) and issubclass(v, PeRenalWarning)}
    assert {"PeRenalWarning", "KAtGridEdge", "NoFeaturesSelected"} <= findings
    bad, seen = [], 0
    for f in sorted(Path(core.__file__).parent.glob("*.py")):
        for n in ast.walk(ast.parse(f.read_text())):
            if isinstance(n, ast.Call) and ast.unparse(n.func) == "warnings.warn":
                seen += 1
                cat = n.args[1] if len(n.args) > 1 else next((k.value for k in n.keywords if k.arg == "category"), None)
                if cat is None or ast.unparse(cat).split(".")[-1] not in findings:
                    bad.append(f"{f.name}:{n.lineno}")
    assert seen >= 20 and bad == [], bad
