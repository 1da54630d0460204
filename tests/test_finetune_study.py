"""Fine-tuning as a stage of the study: training patients only, weights saved with their SHA-256, and `predict` using them."""
import json

import pandas as pd
import pytest

from pe_renal.core import PeRenalError, file_sha256
from pe_renal.study import StudyConfig, predict_cohort, run_study
from pe_renal.synthetic import make_cohort

FAST = dict(backbone="resnet18", weights="random", device="cpu", cv_splits=3, cv_repeats=1, n_boot=0, n_boot_ci=50,
            stability_boot=0, shap_background=5, dpi=100)


@pytest.fixture(scope="module")
def tuned(tmp_path_factory, request):
    "One fine-tuned study, built once per session even when xdist sends this module's tests to different workers."
    from conftest import build_once
    def build(d):
        cohort = make_cohort(d / "cohort", n=40, seed=3, delta=2.5)
        cfg = StudyConfig(**FAST, finetune="last", epochs=2, gradcam_target="head", cache=str(d / "cache"))
        run_study(cohort, d / "results", cfg, verbose=False)
    d = build_once(tmp_path_factory, request, "ft", build)
    return d, d / "cohort", d / "results"


def test_finetuned_weights_curve_and_manifest(tuned):
    d, cohort, out = tuned
    m = json.loads((out / "run.json").read_text())
    ft = m["finetune"]
    assert ft["file"] == "finetuned_resnet18.pt" and ft["sha256"] == file_sha256(out / ft["file"])
    assert ft["refitted_per_fold"] is False and "optimistic" in ft["internal_validation"]
    assert "finetune_optimism.md" in ft["internal_validation"]
    split = pd.read_csv(out / "split.csv")
    assert ft["n_train_patients"] + ft["n_val_patients"] == int((split["split"] == "train").sum())
    assert m["weights"] == m["features"]["weights"] and m["weights"].startswith("file:") and ft["sha256"].startswith(m["weights"][5:])
    h = pd.read_csv(out / "tables" / "finetune_history.csv")
    assert len(h) >= 1 and {"train_loss", "val_auc"} <= set(h.columns)
    assert (out / "figures" / "finetune_curve.png").is_file()
    report = (out / "report.html").read_text()
    assert "fine-tuned once on all training patients" in report and "finetune_curve" in report
    assert "finetune_optimism.md" in report


def test_predict_uses_the_finetuned_weights_and_checks_their_hash(tuned, tmp_path):
    d, cohort, out = tuned
    # a fresh cache: predict runs the whole saved network on every image, the run reused the trunk kept from fine-tuning
    pred, _ = predict_cohort(out / "model.skops", cohort, cache=str(tmp_path / "fresh"), verbose=False)
    assert json.loads((out / "run.json").read_text())["features"].get("n_trunk_reused", 0) > 0
    own = pd.read_csv(out / "predictions.csv").set_index("patient_id")
    got = pred.set_index("patient_id").loc[own.index]
    pd.testing.assert_series_equal(got["p_Composite"], own["p_Composite"], check_names=False, atol=1e-6)
    bad = tmp_path / "changed.pt"
    blob = bytearray((out / "finetuned_resnet18.pt").read_bytes()); blob[-10] ^= 1; bad.write_bytes(bytes(blob))
    with pytest.raises(PeRenalError, match="SHA-256"):
        predict_cohort(out / "model.skops", cohort, weights=str(bad), cache=str(d / "cache"), verbose=False)
