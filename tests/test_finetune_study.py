"""Fine-tuning as a stage of the study: training patients only, weights saved with their SHA-256, and `predict`
using them."""

import json

import pandas as pd
import pytest

from pe_renal.core import PeRenalError, file_sha256
from pe_renal.predict import predict_cohort
from pe_renal.study import StudyConfig, run_study

from conftest import build_once, cohort_subset

FAST = dict(backbone="resnet18", weights="random", device="cpu", cv_splits=3, cv_repeats=1, n_boot=0, n_boot_ci=50,
            stability_boot=0, shap_background=5, dpi=100, image_size=64)


@pytest.fixture(scope="module", params=["fp32", "bf16"])
def tuned(tmp_path_factory, request, ft_study_cohort):
    """One fine-tuned study per kind of CPU that `precision="auto"` tells apart (without native bf16 kernels: fp32; with
    them: bf16), whichever this CPU is; each built once per session even when xdist sends this module's tests to
    different
    workers. Both read the same cohort (`ft_study_cohort`, written once per session)."""
    import pe_renal.features as F
    def build(d):
        cfg = StudyConfig(**FAST, finetune="last", epochs=2, gradcam_target="head", cache=str(d / "cache"))
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(F, "cpu_bf16_kernels", lambda: request.param == "bf16")
            run_study(ft_study_cohort, d / "results", cfg, verbose=False)
    d = build_once(tmp_path_factory, request, f"ft_{request.param}", build)
    return d, ft_study_cohort, d / "results"


def check_weights_curve_and_manifest(tuned):
    "The weights file and its SHA-256, curve, the manifest, the NA validation and the report of a run fine-tuned once."
    d, cohort, out = tuned
    m = json.loads((out / "run.json").read_text())
    ft = m["finetune"]
    assert ft["file"] == "finetuned_resnet18.pt" and ft["sha256"] == file_sha256(out / ft["file"])
    assert ft["refitted_per_fold"] is False and "optimistic" in ft["internal_validation"]
    assert "finetune_optimism.md" in ft["internal_validation"] and "NA" in ft["internal_validation"]
    # fine-tuned once: no internal-validation estimate for the models on the fine-tuned features, anywhere; the
    # clinical one stands
    from pe_renal.stages_eval import FINETUNED_ONCE
    iv = m["internal_validation"]
    assert {k: (v["auc"], v["lo"], v["hi"], v["reason"]) for k, v in iv.items() if k != "Clinical"} == \
        {"DL": (None, None, None, FINETUNED_ONCE), "Composite": (None, None, None, FINETUNED_ONCE)}
    assert iv["Clinical"]["auc"] is not None and iv["Clinical"]["reason"] is None
    t = pd.read_csv(out / "tables" / "internal_validation.csv")
    assert t.loc[t["model"] != "Clinical", "auc"].isna().all() and t.loc[t["model"] == "Clinical", "auc"].notna().all()
    assert set(pd.read_csv(out / "tables" / "internal_validation_cv_folds.csv")["model"]) == {"Clinical"}
    # fine-tuned once: the deep models' thresholds never come from scores whose labels trained the network, and the
    # rule says so
    from pe_renal.evaluation import youden_threshold
    rule, oof = m["model"]["threshold_rule"], pd.read_csv(out / "tables" / "threshold_oof_scores.csv")
    assert rule.startswith("Clinical: Youden index") and "; DL, Composite: " in rule, rule
    deep_rule = rule.split("; DL, Composite: ")[1]
    assert "no patient is scored by a model that saw her" not in deep_rule
    for model, threshold in m["model"][
        "thresholds"
    ].items():  # each threshold is Youden's on the rows said to choose it
        u = oof[(oof["model"] == model) & oof["chooses_threshold"]]
        assert threshold == pytest.approx(youden_threshold(u["label"], u["score"]), abs=1e-12), model
    chose = oof[oof["chooses_threshold"]].groupby("model")["patient_id"].nunique()
    if deep_rule.startswith("Youden index on the out-of-fold predictions of only the"):
        assert (
            chose["DL"] == chose["Composite"] == ft["n_val_patients"]
            and f"only the {ft['n_val_patients']} training" in deep_rule
        )
    else:
        assert deep_rule.startswith("OPTIMISTIC"), deep_rule
    assert chose["Clinical"] == ft["n_train_patients"] + ft["n_val_patients"]
    p = pd.read_csv(out / "tables" / "performance_formatted.csv").set_index(["model", "cohort"])
    assert (
        p.loc[("DL", "train"), "Internal validation AUC (95% CI)"]
        == "NA (not estimated: the backbone was fine-tuned once on all training patients)"
    )
    split = pd.read_csv(out / "split.csv")
    assert ft["n_train_patients"] + ft["n_val_patients"] == int((split["split"] == "train").sum())
    assert (
        m["weights"] == m["features"]["weights"]
        and m["weights"].startswith("file:")
        and ft["sha256"].startswith(m["weights"][5:])
    )
    h = pd.read_csv(out / "tables" / "finetune_history.csv")
    assert len(h) >= 1 and {"train_loss", "val_auc"} <= set(h.columns)
    assert (out / "figures" / "finetune_curve.png").is_file()
    report = (out / "report.html").read_text()
    assert "fine-tuned once on all training patients" in report and "finetune_curve" in report
    assert "finetune_optimism.md" in report
    # Grad-CAM: a fine-tuned backbone's default configuration (HiResCAM, layer2), here with the head's logit as target
    gc = m["summary"]["gradcam_choice"]
    assert (gc["preset"], gc["method"], gc["layer"], gc["target"]) == ("fine", "hirescam", "layer2", "head")
    assert (m["config"]["gradcam_method"], m["config"]["gradcam_layer"]) == ("hirescam", "layer2")
    import html
    import re
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", report)).split())
    assert (
        "Grad-CAM of the fine-tuned head" in text
        and "Configuration: chosen by default for a fine-tuned backbone" in text
    )
    assert "changed by the options: target head" in text and "--gradcam paper" in text
    item = pd.read_csv(out / "tables" / "tripod_ai.csv").set_index("item number").loc["12c", "what this run reports"]
    assert "except the fine-tuning of the backbone" in item


def check_predict_uses_the_finetuned_weights_and_checks_their_hash(tuned, tmp_path):
    "`predict` runs the saved fine-tuned network (the run's scores again) and refuses a changed weights file."
    d, cohort, out = tuned
    # a fresh cache: predict runs the whole saved network on every image, the run reused the trunk kept from fine-tuning
    # (the first 12 women, training and test patients, are enough to compare: each image's features are its own)
    split = pd.read_csv(out / "split.csv")
    few = split["patient_id"].astype(str).head(12).tolist()
    assert set(split.set_index("patient_id").loc[few, "split"]) == {"train", "test"}
    pred, _ = predict_cohort(out / "model.skops", cohort_subset(cohort, tmp_path / "few", few),
                             cache=str(tmp_path / "fresh"), verbose=False, allow_overlap=True)
    m = json.loads((out / "run.json").read_text())
    assert m["features"].get("n_trunk_reused", 0) > 0
    kind = d.name.removeprefix("ft_")  # the kind of CPU the run was made on
    assert (
        m["features"]["precision"] == m["finetune"]["precision"] == kind
        and m["features"]["precision_choice"]["asked"] == "auto"
    )
    own = pd.read_csv(out / "predictions.csv").set_index("patient_id").loc[few]
    got = pred.set_index("patient_id").loc[own.index]
    pd.testing.assert_series_equal(got["p_Composite"], own["p_Composite"], check_names=False, atol=1e-6)
    bad = tmp_path / "changed.pt"
    blob = bytearray((out / "finetuned_resnet18.pt").read_bytes())
    blob[-10] ^= 1
    bad.write_bytes(bytes(blob))
    with pytest.raises(PeRenalError, match="SHA-256"):
        predict_cohort(out / "model.skops", tmp_path / "few", weights=str(bad), cache=str(d / "cache"), verbose=False,
                       allow_overlap=True)


def check_report_and_run_json_of_a_refitted_validation(tuned, tmp_path):
    "The report of a run validated with fine-tuning refitted per fold says so, and has no optimism warning."
    import shutil
    from pe_renal.quoted import finetune_validation_words
    from pe_renal.report import render_report
    d = shutil.copytree(tuned[2], tmp_path / "results")
    m = json.loads((d / "run.json").read_text())
    cfg = StudyConfig(
        finetune="last", finetune_cv="refit", cv_splits=m["config"]["cv_splits"], cv_repeats=m["config"]["cv_repeats"]
    )
    m["config"]["finetune_cv"] = "refit"
    m["finetune"].update(refitted_per_fold=True, internal_validation=finetune_validation_words(cfg))
    (d / "run.json").write_text(json.dumps(m))
    html = render_report(d).read_text()
    assert "again inside each of the" in html and "No .632+ bootstrap" in html
    # no warning box of a run fine-tuned once (the tables copied from that run still carry its NA reasons)
    from pe_renal.quoted import FINETUNE_OPTIMISM
    assert '<div class="warn">The backbone was fine-tuned once' not in html
    assert f"and {FINETUNE_OPTIMISM['refit_null_cv_auc']} where it was 0.5" in html
    assert "refitted inside each of the 3" in m["finetune"]["internal_validation"]
    from pe_renal.tripod import tripod_checklist
    item = tripod_checklist(m).set_index("item number").loc["12c", "what this run reports"]
    assert "refitted in every fold" in item and ".632+" not in item


def test_finetuned_weights_curve_and_manifest_predict_and_refitted_report(tuned, tmp_path):
    """Everything read from one fine-tuned study of each kind of CPU, in one test: an xdist worker never waits for
    another to finish building the study it reads. Each check says which it is when it fails."""
    check_weights_curve_and_manifest(tuned)
    check_predict_uses_the_finetuned_weights_and_checks_their_hash(tuned, tmp_path / "predict")
    check_report_and_run_json_of_a_refitted_validation(tuned, tmp_path / "refit")


@pytest.mark.slow
def test_refit_per_fold_fine_tunes_every_fold_on_its_training_patients_only(study_results, tmp_path, monkeypatch):
    """--finetune-cv refit: the validation stage fine-tunes once per CV fold, on the fold's training patients only. The
    cohort: 50 of the 70 women of the session's study (delta 2.5, made like a real cohort), hard links of its files."""
    import pe_renal.finetune as ft_mod
    from pe_renal.data import load_cohort
    from pe_renal.stages import features_stage, models_stage, split_stage
    from pe_renal.stages_eval import validation_stage
    seen, real = [], ft_mod.finetune_backbone
    def spy(cohort, train_ids, *a, **k):
        seen.append(sorted(map(str, train_ids)))
        return real(cohort, train_ids, *a, **k)

    monkeypatch.setattr(ft_mod, "finetune_backbone", spy)
    truth = pd.read_csv(study_results[1] / "truth" / "patients.csv", dtype=str)
    ids = truth.groupby("label")["patient_id"].head(25)        # 25 of each class: 10 of each in every fold's part
    cohort = load_cohort(cohort_subset(study_results[1], tmp_path / "cohort", ids))
    cfg = StudyConfig(
        **{**FAST, "cv_splits": 3, "cv_repeats": 1, "image_size": 64},
        finetune="last",
        epochs=2,
        finetune_cv="refit",
        cache=str(tmp_path / "cache"),
    )
    (tmp_path / "tables").mkdir()
    (tmp_path / "figures").mkdir()
    split = split_stage(cohort, cfg, tmp_path).split
    features = features_stage(cohort, cfg, verbose=False)          # frozen: only the folds fine-tune here
    assert features.meta["transform"]["size"] == 64
    models = models_stage(features.deep, split, cohort, cfg, tmp_path)
    iv = validation_stage(models, cfg, tmp_path, cohort, verbose=False)
    train = sorted(split.loc[split["split"] == "train", "patient_id"].astype(str))
    held_out = [sorted(set(train) - set(s)) for s in seen]
    assert len(seen) == 3 and all(set(s) <= set(train) for s in seen)
    folds = iv.details["internal_validation_cv_folds"]
    assert [len(h) for h in held_out] == folds[folds["model"] == "DL"][
        "n_test"
    ].tolist()  # each saw its training part only
    assert sorted(p for h in held_out for p in h) == train  # and every training patient was held out once
    assert len(iv.table) == 3 and iv.table.set_index("model")["method"].str.contains(
        "refitted inside every fold"
    ).to_dict() == {"DL": True, "Clinical": False, "Composite": True}  # no .632+ rows

    def too_few(*a, **k): raise PeRenalError("fine-tuning needs at least 2 patients of each class.")

    monkeypatch.setattr(ft_mod, "finetune_backbone", too_few)  # a fold too small to fine-tune: named, with a way out
    with pytest.raises(PeRenalError, match=r"CV fold 1 \(2\d training patients\): fine-tuning needs .*--cv-splits"):
        validation_stage(models, cfg, tmp_path, cohort, verbose=False)


def test_refit_needs_a_fine_tuned_run_and_sizes_are_checked():
    for mode in ("none", "head"):           # head mode leaves the features as they were: nothing to refit
        with pytest.raises(PeRenalError, match="set finetune"):
            StudyConfig(finetune=mode, finetune_cv="refit")
    with pytest.raises(PeRenalError, match=r"finetune_cv \(--finetune-cv\) must be one of once, refit"):
        StudyConfig(finetune="last", finetune_cv="always")
    for bad in (16, 2000, 64.5, "64"):
        with pytest.raises(PeRenalError, match="image_size"):
            StudyConfig(image_size=bad)
