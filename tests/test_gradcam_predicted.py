"""Grad-CAM of the class a target predicts per image: known answer on a constructed case, and the bookkeeping on a
cohort."""

import numpy as np
import pytest
import torch

from pe_renal.core import PeRenalError
from pe_renal.features import FeatureTransform
from pe_renal.backbones import load_backbone
from pe_renal.gradcam import DeepSignature, _known_case, checks_table, compute_cams, explain_images
from pe_renal.study import StudyConfig


def _share(m, blob): return (m * blob).sum() / m.sum() if m.sum() > 0 else 0.0   # an empty map localises nothing


def test_explaining_the_predicted_class_finds_the_blob_whatever_the_sign():
    """A signature whose sign is flipped scores the blob image below 0: explaining its predicted class finds the blob
    again."""
    for seed in range(3):
        sig, x, blob = _known_case(seed=seed)
        pos = compute_cams(sig, x)[0]
        sig.sign = -1.0
        with torch.inference_mode():
            assert sig(x)[0, 0] < 0  # the flipped signature predicts "the other class"
        plain = compute_cams(sig, x)[0]  # negative control: evidence for the class not predicted
        predicted = compute_cams(sig, x, signs=[-1.0])[0]
        assert _share(predicted, blob) > 4 * blob.mean() and _share(plain, blob) < 2 * blob.mean()
        np.testing.assert_allclose(predicted, pos, atol=1e-5)
    with pytest.raises(PeRenalError, match="signs"):
        compute_cams(sig, x, signs=[1.0, -1.0])


def test_explain_images_records_the_class_each_map_explains(tmp_path):
    from pe_renal.data import load_cohort
    from pe_renal.synthetic import make_cohort
    c = load_cohort(make_cohort(tmp_path / "c", n=10, seed=2, n_jobs=1))
    bb = load_backbone("resnet18", "random")
    tf = FeatureTransform(size=64)
    rows = list(range(6))
    x = torch.stack([tf(c.image(i)) for i in rows])
    with torch.inference_mode():
        F = bb.model(x).numpy()
    coef = np.array([1.0, -0.5, 0.3])
    raw = ((F[:, :3] - F[:, :3].mean(0)) / (F[:, :3].std(0) + 1e-6)) @ coef
    sig = DeepSignature(bb.model, [0, 1, 2], F[:, :3].mean(0), F[:, :3].std(0) + 1e-6, coef, -float(np.median(raw)))
    items = explain_images(c, rows, sig, "resnet18", transform=tf, predicted_class=True, randomisation=False)
    t = checks_table(items)
    assert set(t["explains"]) == {"preeclampsia", "normal"}  # both classes occur (median intercept)
    assert (t["explains"] == np.where(t["score"] > 0, "preeclampsia", "normal")).all()
    plain = explain_images(c, rows, sig, "resnet18", transform=tf, randomisation=False)
    assert (checks_table(plain)["explains"] == "preeclampsia").all()  # default: the signature's own direction
    for a, b, e in zip(items, plain, t["explains"]):
        same = np.allclose(a["cam"], b["cam"], atol=1e-5)
        assert same == (e == "preeclampsia") or not b["cam"].any()


def test_predicted_target_needs_a_finetuned_head():
    assert StudyConfig(finetune="full", gradcam_target="predicted").gradcam_target == "predicted"
    with pytest.raises(PeRenalError, match="fine-tuned head"):
        StudyConfig(finetune="none", gradcam_target="predicted")
    with pytest.raises(PeRenalError, match="gradcam_target"):
        StudyConfig(finetune="full", gradcam_target="normal")
