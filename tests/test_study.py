"""The whole study: every output, the manifest, reproducibility, prediction, safe results, the report in a browser."""
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pe_renal.core import PeRenalError, file_sha256
from pe_renal.study import StudyConfig, load_model, predict_cohort, run_study
from pe_renal.synthetic import make_cohort

from conftest import tree_state

PE_RENAL = str(Path(sys.executable).with_name("pe-renal"))
FAST = dict(backbone="resnet18", weights="random", cv_repeats=1, n_boot_optimism=3, n_boot_ci=100, stability_boot=5)

OUTPUTS = ["report.html", "run.json", "split.csv", "predictions.csv", "model.skops",
           "tables/table1_by_group.csv", "tables/table1_by_split.csv", "tables/performance.csv", "tables/performance_formatted.csv",
           "tables/delong_comparisons.csv", "tables/lasso_coefficients.csv", "tables/lasso_cv.csv", "tables/selection_stability.csv",
           "tables/shap_values.csv", "tables/shap_importance_feature.csv", "tables/shap_importance_family.csv",
           "tables/internal_validation_cv.csv", "tables/optimism.csv", "tables/gradcam_checks.csv", "tables/models.csv",
           "figures/roc_train.png", "figures/roc_test.png", "figures/lasso_cv.png", "figures/lasso_path.png",
           "figures/lasso_coefficients.png", "figures/calibration_test.png", "figures/decision_curve_test.png",
           "figures/confusion_test.png", "figures/gradcam_grid.png", "figures/shap_beeswarm.png", "figures/shap_bar.png",
           "figures/shap_families.png", "figures/internal_validation.png", "figures/selection_stability.png"]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    d = tmp_path_factory.mktemp("study")
    cohort = make_cohort(d / "cohort", n=70, seed=0, delta=2.5)   # a strong signal: LASSO keeps deep features even from an untrained resnet18
    cfg = StudyConfig(**FAST, cache=str(d / "cache"), synthetic=True)
    out = run_study(cohort, d / "results", cfg, verbose=False, copy_cohort=True)
    return d, cohort, cfg, out


def test_every_output_is_written(study):
    d, cohort, cfg, out = study
    missing = [f for f in OUTPUTS if not (out / f).is_file()]
    assert not missing, missing
    assert not [p for p in d.iterdir() if ".partial-" in p.name]
    # copy_cohort keeps an identical copy of the cohort inside the results folder
    src = sorted(p.relative_to(cohort) for p in cohort.rglob("*") if p.is_file())
    assert src and src == sorted(p.relative_to(out / "cohort") for p in (out / "cohort").rglob("*") if p.is_file())
    assert all(file_sha256(cohort / p) == file_sha256(out / "cohort" / p) for p in src)


def test_manifest(study):
    d, cohort, cfg, out = study
    m = json.loads((out / "run.json").read_text())
    assert m["config"]["seed"] == 42 and m["config"]["backbone"] == "resnet18"
    assert m["weights"] == "random:seed0" and m["untrained_backbone"] is True
    assert {"numpy", "torch", "scikit-learn", "pe_renal"} <= set(m["versions"])
    imgs = pd.read_csv(cohort / "images.csv")
    assert set(imgs["path"]) <= set(m["input_sha256"]) and "clinical.csv" in m["input_sha256"]
    assert m["input_sha256"]["clinical.csv"] == file_sha256(cohort / "clinical.csv")
    assert set(m["timings_s"]) == {"cohort", "split", "features", "models", "validation", "evaluation", "gradcam", "shap", "report"}
    assert m["model"]["sha256"] == file_sha256(out / "model.skops")
    assert any("SYNTHETIC" in w for w in m["warnings"]) and any("UNTRAINED" in w for w in m["warnings"])


def test_same_input_and_seed_same_results(study):
    d, cohort, cfg, out = study
    out2 = run_study(cohort, d / "results_again", cfg, verbose=False)
    for f in ["predictions.csv", "split.csv", "tables/performance.csv", "tables/lasso_coefficients.csv", "tables/shap_values.csv"]:
        pd.testing.assert_frame_equal(pd.read_csv(out / f), pd.read_csv(out2 / f), obj=f)


def test_existing_results_folder_is_refused(study):
    d, cohort, cfg, out = study
    before = tree_state(out)
    with pytest.raises(PeRenalError, match="already exists"):
        run_study(cohort, out, cfg, verbose=False)
    assert tree_state(out) == before               # no file added, removed or changed


def test_predict_new_patients_with_labels(study, tmp_path):
    d, cohort, cfg, out = study
    new = make_cohort(tmp_path / "new", n=30, seed=11)
    r = subprocess.run([PE_RENAL, "predict", str(new), "--model", str(out / "model.skops"), "--out", str(tmp_path / "p.csv"),
                        "--cache", str(d / "cache")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    p = pd.read_csv(tmp_path / "p.csv")
    assert len(p) == 30 and {"p_DL", "p_Clinical", "p_Composite", "pred_Composite", "label"} <= set(p.columns)
    m = pd.read_csv(tmp_path / "p_metrics.csv")
    assert set(m["model"]) == {"DL", "Clinical", "Composite"} and m["auc"].between(0, 1).all()
    assert "AUC" in r.stdout
    # the prediction equals what the in-memory model gives
    pred, _ = predict_cohort(out / "model.skops", new, cache=str(d / "cache"))
    np.testing.assert_allclose(pred["p_Composite"], p["p_Composite"])


def test_predict_without_labels_and_with_a_missing_column(study, tmp_path):
    d, cohort, cfg, out = study
    new = make_cohort(tmp_path / "new", n=20, seed=12)
    clin = pd.read_csv(new / "clinical.csv")
    clin.drop(columns=["group"]).to_csv(new / "clinical.csv", index=False)
    pred, metrics = predict_cohort(out / "model.skops", new, cache=str(d / "cache"))
    assert metrics is None and "label" not in pred.columns and len(pred) == 20
    clin.drop(columns=["group", "serum_creatinine_umol_L"]).to_csv(new / "clinical.csv", index=False)
    r = subprocess.run([PE_RENAL, "predict", str(new), "--model", str(out / "model.skops"), "--out", str(tmp_path / "q.csv")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "serum_creatinine_umol_L" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "q.csv").exists()


def test_model_file_is_checked(tmp_path):
    (tmp_path / "fake.skops").write_bytes(b"not a model")
    with pytest.raises(PeRenalError, match="fake.skops"):
        load_model(tmp_path / "fake.skops")
    with pytest.raises(PeRenalError, match="not found"):
        load_model(tmp_path / "none.skops")


def test_a_failing_stage_is_named(tmp_path):
    cohort = make_cohort(tmp_path / "c", n=30, seed=0)
    with pytest.raises(PeRenalError, match="stage 'features'"):
        run_study(cohort, tmp_path / "r", StudyConfig(backbone="resnet18", weights=str(tmp_path / "nope.pth")), verbose=False,
                  copy_cohort=True)               # the cohort is copied before the failing stage: it goes with the rest
    assert not (tmp_path / "r").exists() and not [p for p in tmp_path.iterdir() if ".partial-" in p.name]
    with pytest.raises(PeRenalError, match="batch_size"):
        StudyConfig(batch_size=0)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_interrupted_run_leaves_no_results_folder_and_rerun_succeeds(tmp_path, sig):
    cohort = make_cohort(tmp_path / "c", n=40, seed=0)
    out = tmp_path / "results"
    cmd = [PE_RENAL, "run", str(cohort), "--out", str(out), "--backbone", "resnet50", "--weights", "random",
           "--cache", str(tmp_path / f"cache{int(sig)}")]
    env = {**os.environ, "PYTHONFAULTHANDLER": "1"}   # a stack dump if it has to be aborted below
    # a test run started in the background (`make test &`) ignores SIGINT, and a child would inherit that: undo it
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines, features_started = [], threading.Event()
    def read():                                    # keeps reading: a full pipe cannot block the child
        for line in proc.stdout:
            lines.append(line)
            if "features:" in line: features_started.set()
    reader = threading.Thread(target=read, daemon=True); reader.start()
    deadline = time.monotonic() + 120              # holds whether or not the child prints anything
    while not features_started.wait(0.5):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill(); proc.wait(); reader.join(5)
            pytest.fail(f"the features stage did not start within 120 s (exit code {proc.returncode}); output:\n"
                        f"{''.join(lines)[-6000:]}")
    time.sleep(1.0)
    proc.send_signal(sig)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT); proc.wait(); reader.join(5)
        pytest.fail(f"pe-renal run did not stop within 60 s of {sig.name}; its last output:\n{''.join(lines)[-6000:]}")
    reader.join(10)
    assert proc.returncode != 0
    assert not out.exists()                        # nothing under the final name
    if sig == signal.SIGINT:                       # a clean interruption also removes its temporary folder
        assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]
    r = subprocess.run(cmd[:-2] + ["--backbone", "resnet18", "--cache", str(tmp_path / "cache_rerun")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (out / "report.html").is_file()
    assert not (out / "cohort").exists()           # `run` does not copy the patients' images (only the demo does)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)")
def test_report_loads_in_a_real_browser_with_every_image(study):
    playwright = pytest.importorskip("playwright.sync_api")
    d, cohort, cfg, out = study
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                                                      "--disable-component-update", "--no-first-run", "--disable-sync"])
        page = browser.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto((out / "report.html").as_uri()); page.wait_for_load_state("load")
        imgs = page.evaluate("Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth])")
        text = page.inner_text("body")
        browser.close()
    assert len(imgs) >= 12 and all(ok and w > 0 for _, ok, w in imgs), imgs
    assert "SYNTHETIC DATA" in text and "Table 1" in text and "DeLong" in text and not errors
