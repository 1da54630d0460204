"""Fine-tuning on the training patients: reproducible, leak-free, weights file accepted everywhere, known answers."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

import pe_renal.features
import pe_renal.finetune as ft
from pe_renal.core import PeRenalError
from pe_renal.data import load_cohort
from pe_renal.split import split_cohort
from pe_renal.evaluation import delong_ci
from pe_renal.features import FeatureTransform, aggregate_features, extract_features
from pe_renal.backbones import load_backbone
from pe_renal.finetune import finetune_backbone, load_finetuned, save_finetuned
from pe_renal.gradcam import head_signature
from pe_renal.synthetic import make_cohort

from conftest import first_patients

TF = FeatureTransform(size=48)
FAST = dict(transform=TF, epochs=2, views=2, show_progress=False)

TF64 = FeatureTransform(size=64)
KNOWN = dict(transform=TF64, seed=0, show_progress=False, **ft.STUDY_DEFAULTS)   # last, 12 epochs, 2 views, final epoch


def _dl_auc(c, f, tr, te, y):
    "Held-out AUC (DeLong CI) of the study's DL model (LASSO -> KNN); None when LASSO keeps no feature (no model)."
    from pe_renal.lasso import NoFeaturesSelectedError
    from pe_renal.models import make_model

    try:
        m = make_model("DL", deep=list(f.columns)).fit(f.loc[tr], y[tr])
    except NoFeaturesSelectedError:
        return None
    return delong_ci(y[te], m.predict_proba(f.loc[te])[:, 1])


@pytest.fixture(scope="module")
def small(ft_small_cohort):
    """30 women with an image signal, one image each (the checks here compare runs, not accuracy), split 7:3; the
    cohort is written once per session (tests/conftest.py)."""
    c = load_cohort(ft_small_cohort)
    s = split_cohort(c, seed=0)
    return c, s.loc[s.split == "train", "patient_id"].tolist(), s.loc[s.split == "test", "patient_id"].tolist()


@pytest.mark.parametrize("mode", ["last", "full"])
def test_same_seed_same_weights(small, mode):
    c, tr, _ = small
    bb = load_backbone("resnet18", "random")
    kw = {**FAST, "epochs": 2 if mode == "last" else 1}
    a = finetune_backbone(c, tr, bb, mode=mode, seed=0, **kw)
    b = finetune_backbone(c, tr, bb, mode=mode, seed=0, **kw)
    assert a.sha256 == b.sha256 and a.backbone.weights == b.backbone.weights
    pd.testing.assert_frame_equal(a.history.drop(columns="seconds"), b.history.drop(columns="seconds"))
    if mode == "last":
        other = finetune_backbone(c, tr, bb, mode=mode, seed=1, **kw)
        assert other.sha256 != a.sha256                                      # negative control: the seed matters


def test_only_training_patients_are_read(small, monkeypatch):
    c, tr, te = small
    seen = []
    real = ft.read_rois
    monkeypatch.setattr(ft, "read_rois", lambda table: seen.extend(table["patient_id"]) or real(table))
    res = finetune_backbone(c, tr, load_backbone("resnet18", "random"), mode="head", seed=0, **FAST)
    assert set(seen) == set(tr) and not set(seen) & set(te)
    assert set(res.info["val_patients"]) < set(tr) and res.info["n_train_patients"] + res.info["n_val_patients"] == len(
        tr
    )


def test_a_settings_object_is_the_keyword_arguments(small):
    "FinetuneSettings carries what the keyword arguments do: the same weights; keywords override it; typos are refused."
    c, tr, _ = small
    bb = load_backbone("resnet18", "random")
    by_kw = finetune_backbone(c, tr, bb, mode="head", seed=0, **FAST)
    by_obj = finetune_backbone(c, tr, bb, settings=ft.FinetuneSettings(mode="head", seed=0, **FAST))
    assert by_obj.sha256 == by_kw.sha256 and by_obj.info["epochs"] == 2
    over = finetune_backbone(c, tr, bb, settings=ft.FinetuneSettings(mode="head", seed=0, **FAST), epochs=1)
    assert over.info["epochs"] == 1 and over.sha256 != by_kw.sha256                   # the keyword wins
    with pytest.raises(TypeError, match="unexpected keyword argument 'epoch'"):
        finetune_backbone(c, tr, bb, epoch=3, **FAST)
    with pytest.raises(PeRenalError, match="settings must be a FinetuneSettings"):
        finetune_backbone(c, tr, bb, "random", "last")
    with pytest.raises(PeRenalError, match="select must be one of"):                 # refused before any weights load
        ft.FinetuneSettings(select="best")

def test_head_mode_keeps_the_features(small):
    "A linear probe does not change the network: same weights id, same features."
    c, tr, _ = small
    bb = load_backbone("resnet18", "random")
    res = finetune_backbone(c, tr, bb, mode="head", seed=0, **FAST)
    assert res.backbone.weights == bb.weights
    x = torch.randn(2, 3, 48, 48)
    with torch.inference_mode():
        assert torch.equal(res.backbone.model(x), bb.model(x))


def test_weights_file_round_trip_and_cli(small, tmp_path):
    c, tr, _ = small
    res = finetune_backbone(c, tr, load_backbone("resnet18", "random"), mode="last", seed=0,
                            **{**FAST, "epochs": 1, "views": 1})   # the file, not the training, is checked here
    path = tmp_path / "w.pt"
    digest = save_finetuned(res, path)
    bb = load_backbone("resnet18", weights=str(path))
    assert bb.weights == res.backbone.weights == f"file:{digest[:16]}"
    f_mem = extract_features(c, res.backbone, transform=TF, cache=False, show_progress=False)
    f_file = extract_features(c, bb, transform=TF, cache=False, show_progress=False)
    np.testing.assert_allclose(f_mem.to_numpy(), f_file.to_numpy(), rtol=1e-5, atol=1e-5)
    from pe_renal.cli import main
    out = tmp_path / "f.csv"
    assert (
        main(
            ["features", str(c.root), "--out", str(out), "--backbone", "resnet18", "--weights", str(path), "--no-cache"]
        )
        == 0
    )
    assert json.loads((tmp_path / "f.csv.json").read_text())["weights"] == res.backbone.weights
    # hash checked; a changed file is refused
    load_finetuned(path, sha256=digest)
    data = bytearray(path.read_bytes())
    data[-100] ^= 1
    (tmp_path / "bad.pt").write_bytes(bytes(data))
    with pytest.raises(PeRenalError, match="differs from the recorded"):
        load_finetuned(tmp_path / "bad.pt", sha256=digest)
    with pytest.raises(PeRenalError, match="already exists"):
        save_finetuned(res, path)


def test_bad_input(small):
    c, tr, te = small
    bb = load_backbone("resnet18", "random")
    with pytest.raises(PeRenalError, match="not in"):
        finetune_backbone(c, tr + ["NOPE"], bb, **FAST)
    with pytest.raises(PeRenalError, match="mode must be"):
        finetune_backbone(c, tr, bb, mode="middle", **FAST)
    with pytest.raises(PeRenalError, match="at least 2 patients of each class"):
        finetune_backbone(c, tr[:6], bb, **FAST)
    with pytest.raises(PeRenalError, match="ResNet"):
        ft.split_network(load_backbone("densenet121", "random").model, "last")


def test_head_signature_is_the_head_logit(small):
    c, tr, _ = small
    res = finetune_backbone(c, tr, load_backbone("resnet18", "random"), mode="last", seed=0, **FAST)
    x = torch.randn(3, 3, 48, 48)
    with torch.inference_mode():
        np.testing.assert_allclose(
            head_signature(res)(x)[:, 0].numpy(), res.head(res.backbone.model(x)).numpy(), rtol=1e-4, atol=1e-4
        )


@pytest.mark.slow
def test_null_cohort_held_out_auc_covers_half(synthetic_null, tmp_path):
    """Known answer, negative control: no signal anywhere, so the fine-tuned features of the held-out patients carry
    none. (Fine-tuning on the test patients too does not show here: 12 epochs on 60 women without signal gave a
    held-out AUC of 0.68, 0.39-0.97; `test_only_training_patients_are_read` catches that leak.) The cohort: the first
    60 women of the session's null cohort (`synthetic_null`, effect 0, one image each), hard links of its files. The
    positive control is the next test."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    c = load_cohort(first_patients(synthetic_null, tmp_path / "c", 60, link=True))
    s = split_cohort(c, seed=0)
    y = s.set_index("patient_id")["label"]
    tr, te = s.loc[s.split == "train", "patient_id"].tolist(), s.loc[s.split == "test", "patient_id"].tolist()
    res = finetune_backbone(c, tr, load_backbone("resnet18", "random"), **KNOWN)   # as the positive control
    f = aggregate_features(extract_features(c, res.backbone, transform=TF64, cache=False, show_progress=False), c)
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=5000)).fit(f.loc[tr], y[tr])
    auc = delong_ci(y[te], clf.predict_proba(f.loc[te])[:, 1])
    dl = _dl_auc(c, f, tr, te, y)
    print("null cohort, fine-tuned features: logistic held-out AUC", auc, "; DL model", dl)
    assert auc.lo < 0.5 < auc.hi, auc
    assert dl is None or dl.lo < 0.5 < dl.hi, dl


@pytest.mark.slow
def test_image_signal_fine_tuned_network_learns_it_and_its_dl_model_beats_frozen(tmp_path):
    """Known answer, positive: 60 women whose kidneys show the severity (strong group difference, delta=3) and whose
    labs do not. From an untrained resnet18 (64 px), the `last`-mode fine-tuned network has learned the signal itself:
    its head's logit scores the held-out test patients with a CI above 0.5 (measured 0.800, 0.560-1.000; trained on
    shuffled labels it scores 0.54, 0.22-0.85, and with weights that never move 0.5) and its training loss fell.
    Its features give a DL model (LASSO -> KNN) whose held-out CI excludes 0.5 and whose AUC beats the frozen
    features' model (those give LASSO nothing at all here: AUC 0.5 by construction). nbs/03b_finetune.ipynb shows
    the same cohort to its reader."""
    c = load_cohort(make_cohort(tmp_path / "c", n=60, seed=5, delta=3.0, image_effect=0.5, lab_effect=0.0,
                                annotation_rate=0.0, n_jobs=1))
    s = split_cohort(c, seed=0)
    y = s.set_index("patient_id")["label"]
    tr, te = s.loc[s.split == "train", "patient_id"].tolist(), s.loc[s.split == "test", "patient_id"].tolist()
    feats = lambda bb: aggregate_features(extract_features(c, bb, transform=TF64, cache=False, show_progress=False), c)
    bb = load_backbone("resnet18", "random")
    res = finetune_backbone(c, tr, bb, **KNOWN)
    f = feats(res.backbone)
    with torch.inference_mode():  # linear head: the logit of a woman's mean features is her images' mean logit
        head = delong_ci(y[te], res.head(torch.tensor(f.loc[te].to_numpy(), dtype=torch.float32)).numpy().ravel())
    loss = res.history.train_loss
    frozen, tuned = _dl_auc(c, feats(bb), tr, te, y), _dl_auc(c, f, tr, te, y)
    print("image signal: head logit", head, "; DL model held-out AUC, frozen", frozen, "fine-tuned", tuned)
    assert head.lo > 0.5, head                                              # the network itself learned the signal
    assert loss.iloc[-3:].mean() < loss.iloc[:3].mean(), loss.round(3).tolist()
    assert tuned is not None and tuned.lo > 0.5, tuned
    assert tuned.auc > (0.5 if frozen is None else frozen.auc), (tuned, frozen)


def test_select_criterion(small):
    c, tr, _ = small
    bb = load_backbone("resnet18", "random")
    res = finetune_backbone(c, tr, bb, mode="last", seed=0, select="last", **{**FAST, "epochs": 3})
    assert res.best_epoch == len(res.history) == 3 and res.info["select"] == "last"
    with pytest.raises(PeRenalError, match="select must be"):
        finetune_backbone(c, tr, bb, select="best", **FAST)


@pytest.mark.parametrize("mode", ["last", "head"])
def test_finetuned_features_reuse_the_trunk_and_equal_a_plain_forward_pass(
    small, mode, monkeypatch, tmp_path, cpu_kind
):
    """The kept frozen-trunk outputs give the fine-tuned network's features: the trunk runs only on the images
    fine-tuning did
    not see. On either kind of CPU (`cpu_kind`): fine-tuning and extraction pick the same precision, so the reuse
    holds."""
    c, tr, _ = small
    bb = load_backbone("resnet18", "random")
    res = finetune_backbone(c, tr, bb, mode=mode, seed=0, **{**FAST, "epochs": 1, "views": 1})   # one pass is enough
    n_kept = int(c.images.patient_id.isin(set(tr)).sum())
    assert (
        len(res.trunk.acts) == n_kept and res.trunk.precision == res.info["precision"] == cpu_kind
    )  # the plain view of every training image
    ran = []
    real = pe_renal.features._run_backbone
    count = lambda b, table, *a: (
        ran.append(len(table)) or real(b, table, *a)
    )  # full-network passes, and on how many images
    monkeypatch.setattr(
        pe_renal.features, "_run_backbone", count
    )  # finetuned_features runs it through extract_features
    got = ft.finetuned_features(c, res, transform=TF, cache=tmp_path, show_progress=False)
    ref = extract_features(c, res.backbone, transform=TF, cache=False, show_progress=False)   # a plain forward pass
    ran_ref = ran.pop()
    assert got.attrs["pe_renal"]["precision"] == ref.attrs["pe_renal"]["precision"] == cpu_kind
    # equal up to fp32 rounding in either precision: the part that learned gets the trunk's outputs in the trunk's own
    # dtype
    tol = dict(rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got.to_numpy(), ref.to_numpy(), **tol)
    assert ran_ref == c.n_images and ran == [c.n_images - n_kept] and got.attrs["pe_renal"]["n_trunk_reused"] == n_kept
    assert got.attrs["pe_renal"]["weights"] == res.backbone.weights
    # cached under the fine-tuned network's own name, where `extract_features` finds them
    again = extract_features(c, res.backbone, transform=TF, cache=tmp_path, show_progress=False)
    assert again.attrs["pe_renal"]["n_cached"] == c.n_images
    np.testing.assert_array_equal(again.to_numpy(), got.to_numpy())
    # another preprocessing than the trunk ran with: no reuse, a plain forward pass of every image (here 4 images
    # whose trunk outputs were kept)
    few = c.images[c.images.patient_id.isin(set(tr))].head(4)
    ran.clear()
    ft.finetuned_features(few, res, transform=FeatureTransform(size=40), cache=False, show_progress=False)
    assert ran == [len(few)]
    # another precision than the trunk ran in (asked for): no reuse either
    ran.clear()
    other = ft.finetuned_features(few, res, transform=TF, precision="bf16" if cpu_kind == "fp32" else "fp32",
                                  cache=False, show_progress=False)
    assert ran == [len(few)] and other.attrs["pe_renal"]["n_trunk_reused"] == 0
    # negative control: activations that are not this trunk's give other features, and the comparison sees it (on the 4
    # training images: theirs are reused)
    res.trunk.acts = {k: v.roll(1, 0) for k, v in res.trunk.acts.items()}
    ran.clear()
    wrong = ft.finetuned_features(few, res, transform=TF, cache=False, show_progress=False)
    assert ran == [] and wrong.attrs["pe_renal"]["n_trunk_reused"] == len(few)
    assert not np.allclose(wrong.to_numpy(), ref.loc[few.index].to_numpy(), **tol)
