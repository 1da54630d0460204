"""The whole study: every output, the manifest, reproducibility, prediction, safe results, the report in a browser."""
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pe_renal.core import PeRenalError, file_sha256
from pe_renal.model_file import load_model
from pe_renal.predict import predict_cohort
from pe_renal.study import StudyConfig, run_study

from conftest import cli, first_patients, refused, tree_state, write_cohort

PE_RENAL = str(Path(sys.executable).with_name("pe-renal"))
FAST = dict(backbone="resnet18", weights="random", cv_repeats=1, n_boot=3, n_boot_ci=100, stability_boot=5)

OUTPUTS = [
    "report.html",
    "run.json",
    "split.csv",
    "predictions.csv",
    "model.skops",
    "tables/table1_by_group.csv",
    "tables/table1_by_split.csv",
    "tables/performance.csv",
    "tables/performance_formatted.csv",
    "tables/delong_comparisons.csv",
    "tables/lasso_coefficients.csv",
    "tables/lasso_cv.csv",
    "tables/selection_stability.csv",
    "tables/shap_values.csv",
    "tables/shap_importance_feature.csv",
    "tables/shap_importance_family.csv",
    "tables/internal_validation.csv",
    "tables/internal_validation_cv_folds.csv",
    "tables/calibration.csv",
    "tables/gradcam_checks.csv",
    "tables/models.csv",
    "figures/roc_train.png",
    "figures/roc_test.png",
    "figures/lasso_cv.png",
    "figures/lasso_path.png",
    "figures/lasso_coefficients.png",
    "figures/calibration_test.png",
    "figures/decision_curve_test.png",
    "figures/confusion_test.png",
    "figures/gradcam_grid.png",
    "figures/shap_beeswarm.png",
    "figures/shap_bar.png",
    "figures/shap_families.png",
    "figures/internal_validation.png",
    "figures/selection_stability.png",
    "tables/internal_validation.csv",
    "tables/tripod_ai.csv",
    "tables/sample_size.csv",
    "README.txt",
    "tables/README.txt",
    "figures/README.txt",
]


@pytest.fixture(scope="module")
def study(study_results):
    return study_results          # one small synthetic run shared with test_report_browser.py (tests/conftest.py)


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
    assert set(m["timings_s"]) == {
        "cohort",
        "split",
        "features",
        "models",
        "samplesize",
        "validation",
        "evaluation",
        "gradcam",
        "shap",
        "report",
    }
    assert m["model"]["sha256"] == file_sha256(out / "model.skops")
    assert any("SYNTHETIC" in w for w in m["warnings"]) and any("UNTRAINED" in w for w in m["warnings"])
    assert m["status"] == "SYNTHETIC DATA · UNTRAINED BACKBONE"
    assert (
        Path(m["cohort"]) == out.absolute() / "cohort" and Path(m["cohort"]).is_dir()
    )  # the copy, not a temporary folder
    s = m["summary"]
    assert s["split"]["train"]["patients"] + s["split"]["test"]["patients"] == s["patients"] == 70
    assert s["split"]["test"]["events"] == int(pd.read_csv(out / "split.csv").query("split == 'test'")["label"].sum())


def test_existing_results_folder_is_refused(study):
    d, cohort, cfg, out = study
    before = tree_state(out)
    with pytest.raises(PeRenalError, match="already exists"):
        run_study(cohort, out, cfg, verbose=False)
    assert tree_state(out) == before               # no file added, removed or changed


OVERLAP = "default:.*also occur among the patients this model was developed on:UserWarning"  # said on purpose: the new
# demo cohort reuses patient ids


@pytest.fixture(scope="module")
def new_patients(new_patients, tmp_path_factory) -> Path:
    """20 new synthetic women with labels, the first of the session's 40 (tests/conftest.py, hard links: their deep
    features are read from the shared study's cache once computed), shared by the prediction tests and the interrupted
    runs: they only read it."""
    return first_patients(new_patients, tmp_path_factory.mktemp("new") / "new", 20, link=True)


@pytest.mark.filterwarnings(OVERLAP)
def test_predict_new_patients_with_labels(study, new_patients, tmp_path, capsys):
    "`pe-renal predict` (in this process: the command's own code, without a second start of Python and torch)."
    d, cohort, cfg, out = study
    new = new_patients
    code, stdout, err = cli(capsys, "predict", new, "--model", out / "model.skops", "--out", tmp_path / "p.csv",
                            "--cache", d / "cache")
    assert code == 0, err
    p = pd.read_csv(tmp_path / "p.csv")
    assert len(p) == 20 and {"p_DL", "p_Clinical", "p_Composite", "pred_Composite", "label"} <= set(p.columns)
    m = pd.read_csv(tmp_path / "p_metrics.csv")
    assert set(m["model"]) == {"DL", "Clinical", "Composite"} and m["auc"].between(0, 1).all()
    assert "AUC" in stdout and "SYNTHETIC DATA · UNTRAINED BACKBONE" in stdout
    side = json.loads((tmp_path / "p.csv.json").read_text())
    assert side["status"] == "SYNTHETIC DATA · UNTRAINED BACKBONE" and side["model_sha256"] == file_sha256(
        out / "model.skops"
    )
    assert set(p["status"]) == {"SYNTHETIC DATA · UNTRAINED BACKBONE"} and set(m["status"]) == set(p["status"])
    # the prediction equals what the in-memory model gives
    pred, _ = predict_cohort(out / "model.skops", new, cache=str(d / "cache"))
    np.testing.assert_allclose(pred["p_Composite"], p["p_Composite"])


@pytest.mark.filterwarnings(OVERLAP)
def test_predict_without_labels_and_with_a_missing_column(study, new_patients, tmp_path, capsys):
    d, cohort, cfg, out = study
    new = Path(shutil.copytree(new_patients, tmp_path / "new"))     # changed below: a copy of the shared cohort
    clin = pd.read_csv(new / "clinical.csv")
    (new / "cohort.toml").rename(tmp_path / "cohort.toml")  # labels present, but nothing says which column
    with pytest.warns(
        UserWarning, match=r"has a column 'group', the model's label column, but the cohort has no cohort.toml"
    ):
        pred, metrics = predict_cohort(out / "model.skops", new, cache=str(d / "cache"))
    assert metrics is None
    clin.drop(columns=["group"]).to_csv(new / "clinical.csv", index=False)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        pred, metrics = predict_cohort(out / "model.skops", new, cache=str(d / "cache"))
    assert not [w for w in said if "label column" in str(w.message)]   # no labels anywhere: nothing to say
    assert metrics is None and "label" not in pred.columns and len(pred) == 20
    clin.drop(columns=["group", "serum_creatinine_umol_L"]).to_csv(new / "clinical.csv", index=False)
    refused(capsys, "predict", new, "--model", out / "model.skops", "--out", tmp_path / "q.csv",
            says=["serum_creatinine_umol_L"])          # status 2, the column named, no traceback
    assert not (tmp_path / "q.csv").exists()


def test_model_file_is_checked(tmp_path):
    (tmp_path / "fake.skops").write_bytes(b"not a model")
    with pytest.raises(PeRenalError, match="fake.skops"):
        load_model(tmp_path / "fake.skops")
    with pytest.raises(PeRenalError, match="not found"):
        load_model(tmp_path / "none.skops")


def test_a_failing_stage_is_named(tmp_path):
    cohort = write_cohort(tmp_path / "c", n=20)         # passes the cohort and split stages
    with pytest.raises(PeRenalError, match="stage 'features'"):
        run_study(
            cohort,
            tmp_path / "r",
            StudyConfig(backbone="resnet18", weights=str(tmp_path / "nope.pth")),
            verbose=False,
            copy_cohort=True,
        )               # the cohort is copied before the failing stage: it goes with the rest
    assert not (tmp_path / "r").exists() and not [p for p in tmp_path.iterdir() if ".partial-" in p.name]
    with pytest.raises(PeRenalError, match="batch_size"):
        StudyConfig(batch_size=0)
    for dpi in (0, 10, 5000, 150.5, "300"):
        with pytest.raises(PeRenalError, match="dpi"):
            StudyConfig(dpi=dpi)
    assert StudyConfig(dpi=600).dpi == 600 and StudyConfig().dpi == 300


def _interrupt_during_features(cmd, sig):
    "Start `pe-renal run`, send `sig` once its features stage has begun; return (exit code, output)."
    env = {**os.environ, "PYTHONFAULTHANDLER": "1"}   # a stack dump if it has to be aborted below
    # a test run started in the background (`make test &`) ignores SIGINT, and a child would inherit that: undo it
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines, features_started = [], threading.Event()
    def read():                                    # keeps reading: a full pipe cannot block the child
        for line in proc.stdout:
            lines.append(line)
            if "features:" in line:
                features_started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + 120              # holds whether or not the child prints anything
    while not features_started.wait(0.5):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            reader.join(5)
            pytest.fail(f"the features stage did not start within 120 s (exit code {proc.returncode}); output:\n"
                        f"{''.join(lines)[-6000:]}")
    time.sleep(1.0)
    proc.send_signal(sig)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        proc.wait()
        reader.join(5)
        text = "".join(lines)
        dump = text.find("Fatal Python error")  # the stacks faulthandler printed
        pytest.fail(f"pe-renal run did not stop within 60 s of {sig.name}; its output:\n{text[:3000]}\n...\n"
                    f"{text[dump:dump + 8000] if dump >= 0 else text[-6000:]}")
    reader.join(10)
    proc.stdout.close()
    return proc.returncode, "".join(lines)


def _run_with_threads(cmd, threads, capsys):
    """`pe-renal run` after an interruption: with 1 thread in this process (torch's and the BLAS libraries' thread
    count set to 1 for the call, then restored) or with more in a process of its own (OMP_NUM_THREADS)."""
    if threads > 1:  # waiting threads sleep instead of spinning: the same arithmetic, without burning a core meanwhile
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OMP_WAIT_POLICY": "PASSIVE",
               "OPENBLAS_THREAD_TIMEOUT": "4"}
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        return r.returncode, r.stdout + r.stderr
    import torch
    from threadpoolctl import threadpool_limits
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with threadpool_limits(1):
            code, out, err = cli(capsys, *cmd[1:])
    finally:
        torch.set_num_threads(before)
    return code, out + err


@pytest.mark.slow
def test_interrupted_runs_leave_no_results_folder_and_reruns_give_the_same_results(new_patients, tmp_path, capsys):
    """Ctrl-C, then a hard kill, in the middle of the features stage: nothing under the results folder's name (Ctrl-C
    also removes its temporary folder); a rerun succeeds each time, and the two reruns (same input and seed, each with
    a fresh feature cache, one with 1 thread and one with 2 in a process of its own) choose the same precision and
    write the same numbers: a study depends on its inputs, settings and hardware, not on the thread count or the state
    of a cache. (The rerun after Ctrl-C runs in this process: it saves a start of Python and torch.) The cohort: 20 new
    women with a strong signal (the LASSO keeps deep features, so the deep features reach every table compared); the
    reruns small (3-fold CV, 64-pixel images, 30 dpi figures): what is compared is that they agree."""
    cohort = new_patients
    outs = []
    for sig in (signal.SIGINT, signal.SIGKILL):
        out = tmp_path / f"results_{sig.name}"
        cmd = [
            PE_RENAL,
            "run",
            str(cohort),
            "--out",
            str(out),
            "--weights",
            "random",
            "--cv-repeats",
            "1",
            "--boot",
            "3",
            "--stability-boot",
            "5",
            "--cv-splits",
            "3",
            "--dpi",
            "30",
        ]
        code, text = _interrupt_during_features(
            cmd + ["--backbone", "resnet50", "--cache", str(tmp_path / f"cache_{sig.name}")], sig
        )
        assert code != 0, text
        assert not out.exists()                        # nothing under the final name
        if sig == signal.SIGINT:                       # a clean interruption also removes its temporary folder
            assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]
        code, text = _run_with_threads(
            cmd + ["--backbone", "resnet18", "--image-size", "64", "--cache", str(tmp_path / f"rerun_{sig.name}")],
            1 if sig == signal.SIGINT else 2, capsys,
        )
        assert code == 0, text
        assert (out / "report.html").is_file()
        assert not (out / "cohort").exists()           # `run` does not copy the patients' images (only the demo does)
        outs.append(out)
    for f in [
        "predictions.csv",
        "split.csv",
        "tables/performance.csv",
        "tables/lasso_coefficients.csv",
        "tables/shap_values.csv",
        "tables/selection_stability.csv",
        "tables/internal_validation.csv",
    ]:
        assert (outs[0] / f).read_bytes() == (outs[1] / f).read_bytes(), f
    m = [json.loads((o / "run.json").read_text()) for o in outs]
    assert m[0]["summary"]["lasso"]["selected"] > 0, m[0]["summary"]["lasso"]   # deep features reach the tables
    assert m[0]["features"]["precision_choice"] == m[1]["features"]["precision_choice"]
    assert (
        m[0]["features"]["precision_choice"]["asked"] == "auto"
        and "never by timing" in m[0]["features"]["precision_choice"]["rule"]
    )


def test_status_on_every_output(study):
    from PIL import Image
    d, cohort, cfg, out = study
    status = "SYNTHETIC DATA · UNTRAINED BACKBONE"
    for p in sorted((out / "figures").glob("*.png")):
        with Image.open(p) as im:
            info = im.info
        assert info.get("pe_renal-status") == status, p.name
        assert round(info["dpi"][0]) == cfg.dpi == 100, p.name      # every figure at the resolution asked
    for sub in (".", "tables", "figures"):
        text = (out / sub / "README.txt").read_text()
        assert status in text and "run.json" in text
    info = load_model(out / "model.skops")["info"]
    assert info["synthetic"] is True and info["untrained"] is True
    digests = [file_sha256(p) for p in (out / "figures").glob("*.png")]
    assert len(digests) == len(set(digests))  # no figure drawn on top of another (shap draws into the current figure)


def test_a_real_looking_run_has_no_status_label(tmp_path):
    from pe_renal.columns import write_readmes
    from pe_renal.status import run_status
    assert run_status(False, False) == ""
    (tmp_path / "tables").mkdir()
    write_readmes(tmp_path, "")
    assert "no status label" in (tmp_path / "tables" / "README.txt").read_text()


def test_tripod_checklist(study):
    d, cohort, cfg, out = study
    t = pd.read_csv(out / "tables/tripod_ai.csv", dtype=str)
    assert list(t.columns) == ["item number", "section", "item", "what this run reports", "status"]
    assert len(t) == t["item number"].nunique() and {"1", "10", "11", "12c", "23a", "27c"} <= set(t["item number"])
    split = pd.read_csv(out / "split.csv")
    n_test, e_test = int((split["split"] == "test").sum()), int(split.query("split == 'test'")["label"].sum())
    row = lambda n: t.set_index("item number").loc[n]
    assert f"test: {n_test} patients, {e_test} with the outcome" in row("10")["what this run reports"]
    assert row("17")["status"] == "to be reported by the authors" and row("11")["status"] == "reported by this run"


def test_report_command_rerenders_without_touching_anything_else(study, tmp_path):
    from conftest import tree_state
    d, cohort, cfg, out = study
    res = tmp_path / "res"
    shutil.copytree(out, res)
    html = (res / "report.html").read_text()
    (res / "report.html").write_text("stale")
    before = {k: v for k, v in tree_state(res).items() if not k.endswith("report.html")}
    r = subprocess.run([PE_RENAL, "report", str(res)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (res / "report.html").read_text() == html
    assert {k: v for k, v in tree_state(res).items() if not k.endswith("report.html")} == before
    r = subprocess.run([PE_RENAL, "report", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 2 and "run.json" in r.stderr and "Traceback" not in r.stderr


def test_report_renders_a_results_folder_of_an_earlier_version(study, tmp_path):
    "A run.json without the keys later versions added (fine-tuning, internal validation) still renders."
    from pe_renal.report import render_report
    d, cohort, cfg, out = study
    res = tmp_path / "old"
    shutil.copytree(out, res)
    m = json.loads((res / "run.json").read_text())
    for k in ("finetune", "internal_validation", "status"):
        m.pop(k, None)
    (res / "run.json").write_text(json.dumps(m))
    assert "Model performance" in render_report(res).read_text()


def _visible(html_text: str) -> str:
    import html
    import re
    html_text = re.sub(r"<(style|script)[^>]*>.*?</\1>", " ", html_text, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", html_text)).split())


def test_report_lists_every_candidate_predictor_and_warns_of_incorporation_bias(study, tmp_path):
    from pe_renal.report import render_report
    d, cohort, cfg, out = study
    m = json.loads((out / "run.json").read_text(encoding="utf-8"))
    pr = pd.read_csv(out / "tables" / "predictors.csv")
    clin = pd.read_csv(Path(cohort) / "clinical.csv")
    assert set(pr["column"]) == set(clin.columns) - {"patient_id", "group", "label", "split"}   # every candidate, once
    assert sorted(pr.loc[pr["role"] != "excluded", "column"]) == sorted(m["summary"]["clinical_predictors"])
    assert pr.loc[pr["role"] == "excluded", "reason"].notna().all()
    text = _visible((out / "report.html").read_text(encoding="utf-8"))
    assert m["summary"]["predictors_note"] in text
    for col, why in m["summary"]["excluded"].items():
        assert f"{col} ({why})" in text
    kept = m["summary"]["incorporation_bias"]                    # the shared study keeps one outcome-defining column
    assert len(kept) == 1 and f"Incorporation bias: {kept[0]}." in text
    # a run that kept an outcome-defining column says so, in the warnings on top and in Methods
    r2 = tmp_path / "r"
    shutil.copytree(out, r2)
    m["summary"]["incorporation_bias"] = ["'sbp_mmHg' is used as a predictor but helps define the outcome"]
    (r2 / "run.json").write_text(json.dumps(m), encoding="utf-8")
    assert "Incorporation bias: 'sbp_mmHg' is used as a predictor" in _visible(
        render_report(r2).read_text(encoding="utf-8")
    )


def test_shap_is_shown_beside_the_validated_auc_of_the_model_it_explains(study, tmp_path):
    from pe_renal.report import render_report
    d, cohort, cfg, out = study
    r2 = Path(shutil.copytree(out, tmp_path / "r"))
    perf = pd.read_csv(r2 / "tables" / "performance.csv")
    row = perf[(perf["model"] == "Composite") & (perf["cohort"] == "test")].iloc[0]
    f = lambda v: f"{v:.3f}"
    for lo, established in ((0.62, True), (0.45, False)):        # the same model, its test CI clear of 0.5 or not
        perf.loc[row.name, "auc_lo"] = lo
        perf.to_csv(r2 / "tables" / "performance.csv", index=False)
        m = json.loads((r2 / "run.json").read_text(encoding="utf-8"))
        if m["internal_validation"]["Composite"].get("lo") is not None:
            m["internal_validation"]["Composite"]["lo"] = 0.6      # internal validation clear of 0.5 in both cases
        (r2 / "run.json").write_text(json.dumps(m), encoding="utf-8")
        text = _visible(render_report(r2).read_text(encoding="utf-8"))
        assert f"the Composite model, whose held-out test AUC is {f(row.auc)} ({f(lo)}-{f(row.auc_hi)})" in text
        assert ("Its discrimination is not established" in text) == (not established)
