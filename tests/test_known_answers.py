"""Known answers for the top of the pipeline: the study, prediction, SHAP, Grad-CAM and deep features are checked
against values known beforehand, not only for being present and well-formed.

- a model that scores its own cohort reproduces the written predictions exactly;
- on a cohort with signal the test and external AUCs are well above 0.5 and equal DeLong's AUC of the written
  scores; on a cohort without signal (effect=0) their 95% CI covers 0.5;
- SHAP of a model whose formula is known equals that formula's exact Shapley values, feature by feature;
- Grad-CAM maps of a batch of images sit where each image's own signal is;
- deep features equal a plain torchvision forward pass of the same network on the same input."""
import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
from PIL import Image
from sklearn.pipeline import Pipeline
from torch import nn

from pe_renal.cli import main as pe_renal_main
from pe_renal.core import PeRenalError
from pe_renal.data import load_cohort
from pe_renal.evaluation import delong_ci
from pe_renal.features import IMAGENET_MEAN, IMAGENET_STD, FeatureTransform, extract_features
from pe_renal.gradcam import DeepSignature, explain_images
from pe_renal.models import demo_data, make_model
from pe_renal.shap import explain_model, model_inputs
from pe_renal.predict import predict_cohort
from pe_renal.study import StudyConfig, run_study

from conftest import first_patients, tree_state, write_cohort

MODELS = ["DL", "Clinical", "Composite"]
FAST = dict(backbone="resnet18", weights="random", device="cpu", cv_splits=3, cv_repeats=1, n_boot=0, n_boot_ci=50,
            stability_boot=0, shap_background=5, dpi=30)


# ---------------------------------------------------------------------------------------------------------------------
# The study and prediction: one strong-signal study shared by the tests, one no-signal cohort

@pytest.fixture(scope="module")
def study(study_results):
    "The session's strong-signal study (tests/conftest.py), with the cohort's state before it ran."
    d, cohort, cfg, out = study_results
    return d, cohort, cfg, out, study_results.before


@pytest.fixture(scope="module")
def null_cohort(synthetic_null, tmp_path_factory):
    """40 women, no signal anywhere (effect=0): the first 40 of the session's 120 drawn without signal
    (tests/conftest.py `synthetic_null`, one image each; hard links, read only)."""
    return first_patients(synthetic_null, tmp_path_factory.mktemp("null") / "cohort", 40, link=True)


def truth(cohort):
    "The labels the generator drew (hidden from the analysis), 1 = preeclampsia."
    return pd.read_csv(cohort / "truth" / "patients.csv").set_index("patient_id")["label"]


def covers_half(lo, hi): return (np.asarray(lo) < 0.5) & (np.asarray(hi) > 0.5)


def test_study_positive_control_test_auc_above_chance(study):
    d, cohort, cfg, out, _ = study
    pred = pd.read_csv(out / "predictions.csv").set_index("patient_id")
    assert (pred["label"] == truth(cohort).loc[pred.index]).all()  # label 1 is preeclampsia, as the generator drew it
    perf = pd.read_csv(out / "tables" / "performance.csv").set_index(["model", "cohort"])
    test = pred[pred["split"] == "test"]
    for m in MODELS:
        a = delong_ci(test["label"], test[f"p_{m}"])  # the table's AUC is that of the written scores
        np.testing.assert_allclose(
            perf.loc[(m, "test"), ["auc", "auc_lo", "auc_hi"]].to_numpy(float), [a.auc, a.lo, a.hi], rtol=1e-12
        )
        assert a.lo > 0.5, (m, a)
    assert perf.loc[("Composite", "test"), "auc"] > 0.85


def test_study_negative_control_test_auc_ci_covers_half(study, null_cohort, tmp_path):
    d, cohort, cfg, out, _ = study
    res = run_study(null_cohort, tmp_path / "null", StudyConfig(**FAST, cache=cfg.cache), verbose=False)
    perf = pd.read_csv(res / "tables" / "performance.csv")
    test = perf[perf["cohort"] == "test"]
    assert "Composite" in set(test["model"]) and covers_half(test["auc_lo"], test["auc_hi"]).all(), test
    # one model, one number: when the LASSO kept no deep feature the composite model is the clinical one, and every
    # output
    # says so with the clinical numbers (threshold, internal validation); otherwise nothing is merged
    import json
    run = json.loads((res / "run.json").read_text())
    empty = run["summary"]["lasso"] is None or run["summary"]["lasso"]["selected"] == 0
    pred = pd.read_csv(res / "predictions.csv")
    assert empty == bool((pred["p_Composite"] == pred["p_Clinical"]).all())
    iv = pd.read_csv(res / "tables" / "internal_validation.csv").set_index(["model", "method"])
    row = perf.set_index(["model", "cohort"])
    if empty:
        assert (perf.loc[perf["model"] == "Composite", "same_as"] == "Clinical").all()
        assert run["model"]["thresholds"]["Composite"] == run["model"]["thresholds"]["Clinical"]
        assert "Composite is the Clinical model (the LASSO kept no deep feature)" in run["model"]["threshold_rule"]
        assert run["internal_validation"]["Composite"] == {
            **run["internal_validation"]["Clinical"],
            "same_as": "Clinical",
        }
        cols = ["auc", "lo", "hi", "n_resamples"]
        pd.testing.assert_frame_equal(iv.loc["Composite", cols], iv.loc["Clinical", cols])
        assert (iv.loc["Composite", "same_as"] == "Clinical").all()
        for c in ("auc", "threshold", "sensitivity", "sensitivity_lo", "f1"):
            assert row.loc[("Composite", "test"), c] == row.loc[("Clinical", "test"), c], c
    else:
        assert perf["same_as"].isna().all() and run["model"]["threshold_rule"].count(";") == 0


def test_predict_on_the_study_cohort_reproduces_predictions_csv_and_nothing_is_written_into_it(study):
    """The study's model scoring its own cohort gives the written predictions exactly (said NOT external); neither the
    study nor predict wrote anything into the cohort folder."""
    d, cohort, cfg, out, before = study
    written = pd.read_csv(out / "predictions.csv").set_index("patient_id")
    with pytest.raises(PeRenalError, match="not external validation"):  # its own development cohort: refused ...
        predict_cohort(out / "model.skops", cohort, cache=cfg.cache)
    with pytest.warns(UserWarning, match="not external validation"):            # ... unless allowed, and then said
        pred, metrics = predict_cohort(out / "model.skops", cohort, cache=cfg.cache, allow_overlap=True)
    n_train = int((pd.read_csv(out / "split.csv")["split"] == "train").sum())
    assert (
        metrics["validation"]
        .str.startswith(f"NOT external: {len(written)} of {len(written)} patients ({n_train} of them training")
        .all()
    )
    pred = pred.set_index("patient_id").loc[written.index]
    cols = [f"{k}_{m}" for m in MODELS for k in ("p", "pred")]
    pd.testing.assert_frame_equal(pred[["label"] + cols], written[["label"] + cols], check_exact=True)
    assert set(metrics["model"]) == set(MODELS)
    assert tree_state(cohort) == before, "the study or predict wrote into the cohort folder"


def test_predict_with_signal_auc_is_delong_of_the_written_scores(study, new_patients, tmp_path, capsys):
    d, cohort, cfg, out, _ = study
    new = new_patients                                   # 40 new women with signal (tests/conftest.py)
    rc = pe_renal_main(["predict", str(new), "--model", str(out / "model.skops"), "--out", str(tmp_path / "p.csv"),
                        "--cache", cfg.cache, "--device", "cpu"])
    printed = capsys.readouterr().out
    assert rc == 0
    p = pd.read_csv(tmp_path / "p.csv").set_index("patient_id")
    metrics = pd.read_csv(tmp_path / "p_metrics.csv").set_index("model")
    assert (p["label"] == truth(new).loc[p.index]).all() and len(p) == 40
    for m in MODELS:
        a = delong_ci(p["label"], p[f"p_{m}"])
        np.testing.assert_allclose(
            metrics.loc[m, ["auc", "auc_lo", "auc_hi"]].to_numpy(float), [a.auc, a.lo, a.hi], rtol=1e-12
        )
        assert a.lo > 0.5, (m, a)  # well above chance on new patients with signal
        assert f"AUC {a.auc:.3f} ({a.lo:.3f}-{a.hi:.3f})" in printed
    assert metrics.loc["Composite", "auc"] > 0.75


def test_predict_without_signal_ci_covers_half(study, null_cohort):
    d, cohort, cfg, out, _ = study
    pred, metrics = predict_cohort(out / "model.skops", null_cohort, cache=cfg.cache)
    for m in MODELS:
        a = delong_ci(pred["label"], pred[f"p_{m}"])
        np.testing.assert_allclose(metrics.set_index("model").loc[m, ["auc", "auc_lo", "auc_hi"]].to_numpy(float),
                                   [a.auc, a.lo, a.hi], rtol=1e-12)
        assert covers_half(a.lo, a.hi), (m, a)


# ---------------------------------------------------------------------------------------------------------------------
# SHAP: a model whose formula is known

class KnownAdditiveModel:
    "P(preeclampsia) = 0.5 + sum_j w_j tanh(z_j) over a few named inputs z_j; every other input is ignored."
    def __init__(self, index:dict, weights:dict): self.index, self.weights = index, weights
    def terms(self, Z): return {f: w * np.tanh(np.asarray(Z)[:, self.index[f]]) for f, w in self.weights.items()}
    def predict_proba(self, Z):
        p = 0.5 + sum(self.terms(Z).values())
        return np.c_[1 - p, p]


def test_shap_of_a_known_additive_model():
    data = demo_data(n=100, seed=1, n_features=256)
    Xtr, ytr = data.part("train")
    Xte, _ = data.part("test")
    features = make_model("Composite", data.deep, data.numeric, data.categorical).named_steps["features"].fit(Xtr, ytr)
    _, cols = model_inputs(Pipeline([("features", features)]), Xtr)
    deep = cols.loc[cols["family"] == "deep", "feature"].iloc[0]
    read = {
        "serum_creatinine_umol_L": 0.25,
        deep: -0.15,
        "parity=nulliparous": 0.05,
    }  # sign: creatinine up, the deep one down
    names = list(cols["feature"])
    clf = KnownAdditiveModel({f: names.index(f) for f in read}, read)
    model = Pipeline([("features", features), ("classifier", clf)])
    Xte = Xte.iloc[:12]
    ex = explain_model(model, Xtr, Xte, n_background=len(Xtr), seed=0)      # background: every training patient
    v = pd.DataFrame(ex.values, columns=ex.feature_names)
    assert list(v.columns) == names
    # inputs the model never reads get exactly nothing
    assert np.abs(v.drop(columns=list(read)).to_numpy()).max() < 1e-12
    # for an additive model the Shapley value of input j is g_j(x_j) - mean over the background of g_j
    Ztr, _ = model_inputs(model, Xtr)
    Z, _ = model_inputs(model, Xte)
    g, g_bg = clf.terms(Z.to_numpy()), clf.terms(Ztr.to_numpy())
    for f in read:
        np.testing.assert_allclose(v[f], g[f] - g_bg[f].mean(), atol=1e-9, err_msg=f)
    # sign and order: creatinine's values rise with creatinine, the deep feature's fall with it
    z = Z["serum_creatinine_umol_L"].to_numpy()
    assert (np.diff(v["serum_creatinine_umol_L"].to_numpy()[np.argsort(z)]) >= -1e-12).all()
    assert (np.diff(v[deep].to_numpy()[np.argsort(Z[deep].to_numpy())]) <= 1e-12).all()
    assert v["serum_creatinine_umol_L"].abs().mean() > v[deep].abs().mean() > v["parity=nulliparous"].abs().mean()


# ---------------------------------------------------------------------------------------------------------------------
# Grad-CAM: a network that sees bright pixels, images whose bright spot sits in different places

class BrightSpotNet(nn.Module):
    """Pooled features = mean of relu(pixel - 0.5) over 4 x 4 cells: the deep signature grows with bright pixels,
    wherever."""

    def __init__(self):
        super().__init__()
        conv = nn.Conv2d(3, 2, 1)
        with torch.no_grad():  # undo the ImageNet normalisation: sum_c std_c/3 * x_c + b = pixel - 0.5
            conv.weight.zero_()
            conv.weight[:, :, 0, 0] = torch.tensor(IMAGENET_STD) / 3
            conv.bias.fill_(float(np.mean(IMAGENET_MEAN)) - 0.5)
        self.stem = nn.AvgPool2d(4)
        self.layer4 = nn.Sequential(nn.Sequential(conv, nn.ReLU()))
        self.pool = nn.AdaptiveAvgPool2d(1)
    def forward(self, x): return self.pool(self.layer4(self.stem(x))).flatten(1)


SPOTS = [
    (0.25, 0.25),
    (0.25, 0.75),
    (0.75, 0.25),
    (0.75, 0.75),
    (0.5, 0.5),
]  # (row, column) of each image's spot in its ROI


def disc(shape, centre, radius):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (yy - centre[0] * shape[0])**2 + (xx - centre[1] * shape[1])**2 < radius**2


def spot_cohort(root):
    """Five images of different sizes, each with an ROI box and a bright spot at a known place inside it (and one
    outside)."""
    write_cohort(root, n=len(SPOTS))
    rng = np.random.default_rng(0)
    rows = []
    for i, (spot, (h, w)) in enumerate(zip(SPOTS, [(90, 120), (120, 90), (100, 100), (80, 140), (110, 110)])):
        img = np.clip(0.25 + 0.05 * rng.standard_normal((h + 30, w + 20)), 0, 0.45)
        img[:12, :12] = 0.95                                               # a bright corner outside the ROI: never seen
        box = (15, 25, 15 + w, 25 + h)
        roi = img[box[1]:box[3], box[0]:box[2]]
        roi[disc(roi.shape, spot, 0.12 * min(h, w))] = 0.9
        Image.fromarray((img * 255).round().astype(np.uint8)).save(root / f"images/p{i:02d}_0.png")
        rows.append(
            dict(patient_id=f"P{i:02d}", path=f"images/p{i:02d}_0.png", x0=box[0], y0=box[1], x1=box[2], y1=box[3])
        )
    pd.DataFrame(rows).to_csv(root / "images.csv", index=False)
    return load_cohort(root)


def test_gradcam_maps_sit_on_each_images_own_spot(tmp_path):
    cohort = spot_cohort(tmp_path / "c")
    sig = DeepSignature(BrightSpotNet(), [0, 1], np.zeros(2), np.ones(2), np.ones(2), 0.0)
    rows = [2, 0, 4, 1, 3]                                                 # not in file order; batches of 2 inside
    items = explain_images(cohort, rows, sig, "resnet18", transform=FeatureTransform(size=96), randomisation=False)
    assert [it["row"] for it in items] == rows
    for it in items:
        cam, (h, w) = it["cam"], it["roi"].shape
        energy = [cam[disc((h, w), s, 0.2 * min(h, w))].sum() / cam.sum() for s in SPOTS]
        own = int(np.argmax(energy))
        assert own == it["row"] and energy[own] > 0.9, (it["row"], np.round(energy, 3))


# ---------------------------------------------------------------------------------------------------------------------
# Deep features: a plain torchvision forward pass

def test_features_equal_a_plain_torchvision_forward_pass(tmp_path):
    root = write_cohort(tmp_path / "c", n=6, images_per_patient=2)          # random 40 x 50 gray images
    rng = np.random.default_rng(1)
    imgs = pd.read_csv(root / "images.csv")
    x0, y0 = rng.integers(0, 15, len(imgs)), rng.integers(0, 12, len(imgs))
    imgs = imgs.assign(x0=x0, y0=y0, x1=x0 + rng.integers(20, 36, len(imgs)), y1=y0 + rng.integers(16, 28, len(imgs)))
    imgs.to_csv(root / "images.csv", index=False)                          # ROI boxes of different sizes and places
    cohort = load_cohort(root)
    tf = FeatureTransform(size=64)
    got = extract_features(cohort.images.iloc[::-1], "resnet18", "random", device="cpu", precision="fp32", transform=tf,
                           cache=False, show_progress=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)                                                # the seed of weights="random"
        net = torchvision.models.resnet18(weights=None)
    net.fc = nn.Identity()
    net.eval()
    x = torch.stack([tf(np.asarray(Image.open(root / r.path), np.float32)[r.y0:r.y1, r.x0:r.x1] / 255)
                     for r in imgs.iloc[::-1].itertuples()])
    with torch.inference_mode():
        want = net(x).numpy()
    assert list(got.index) == list(cohort.images.index[::-1])
    np.testing.assert_allclose(got.to_numpy(), want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
    assert not np.allclose(want[0], want[1])
