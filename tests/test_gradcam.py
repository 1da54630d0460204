"""Grad-CAM of the deep signature: shape, range, a constructed case with a known answer, sign, hooks released."""
import gc

import numpy as np
import pandas as pd
import pytest
import torch

from pe_renal.core import PeRenalError
from pe_renal.features import FeatureTransform
from pe_renal.backbones import load_backbone
from pe_renal.gradcam import (DeepSignature, _known_case, cam_to_roi, checks_table, compute_cams, explain_images,
                              localisation)
from pe_renal.lasso import LassoSelector


def test_known_case_concentrates_on_the_blob_and_follows_the_sign():
    for seed in range(3):
        sig, x, blob = _known_case(seed=seed)
        m = compute_cams(sig, x)[0]
        assert m.shape == (128, 128) and np.isfinite(m).all() and m.min() >= 0 and m.max() <= 1
        assert (m * blob).sum() / m.sum() > 4 * blob.mean()
        sig.sign = -1.0
        assert not np.allclose(compute_cams(sig, x)[0], m, atol=0.05)


@pytest.mark.parametrize("method", ["gradcam++", "hirescam", "xgradcam", "layercam"])
def test_other_cam_methods(method):
    sig, x, blob = _known_case(seed=0)
    m = compute_cams(sig, x, method=method)[0]
    assert m.shape == (128, 128) and np.isfinite(m).all() and m.min() >= 0


def test_signature_module_equals_the_lasso_score():
    "DeepSignature(x) is exactly the selector's signature of the backbone's features of x."
    bb = load_backbone("resnet18", "random")
    x = torch.randn(60, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        F = bb.model(x).numpy()
    y = (F[:, 3] > np.median(F[:, 3])).astype(int)
    cols = [f"deep_{j:04d}" for j in range(F.shape[1])]
    sel = LassoSelector(cv=3, random_state=0).fit(pd.DataFrame(F, columns=cols), y)
    assert len(sel.selected_) > 0
    sig = DeepSignature.from_selector(bb, sel)
    with torch.inference_mode():
        s = sig(x)[:, 0].numpy()
    np.testing.assert_allclose(s, sel.signature(pd.DataFrame(F, columns=cols)), rtol=1e-4, atol=1e-4)


def test_no_selected_feature_is_a_clear_error():
    class Empty:
        def linear_signature(self):
            from pe_renal.lasso import LinearSignature
            return LinearSignature([], np.zeros(0), np.ones(0), np.zeros(0), 0.0)
    with pytest.raises(PeRenalError, match="no deep feature"):
        DeepSignature.from_selector(load_backbone("resnet18", "random"), Empty())


@pytest.mark.parametrize("resize", ["pad", "stretch", "crop"])
def test_cam_to_roi_keeps_geometry(resize):
    tf = FeatureTransform(size=64, resize=resize)
    roi = np.zeros((40, 100), np.float32)
    roi[:, :50] = 1  # left half bright
    x = tf(roi)[0].numpy()
    cam = (x > x.mean()).astype(np.float32)                           # a "map" that marks the bright part
    back = cam_to_roi(cam, roi.shape, tf)
    assert back.shape == roi.shape
    if resize == "crop":   # only the central 40 columns were seen by the network
        assert back[:, 32:48].mean() > 0.8 and back[:, :28].max() == 0 and back[:, 55:].mean() < 0.1
    else:
        assert back[:, :40].mean() > 0.8 and back[:, 60:].mean() < 0.1


def test_localisation_numbers():
    cam = np.zeros((10, 10))
    cam[:5] = 1
    mask = np.zeros((10, 10), bool)
    mask[:5, :5] = True
    r = localisation(cam, mask)
    assert (
        r["energy_inside"] == pytest.approx(0.5)
        and r["area_fraction"] == pytest.approx(0.25)
        and r["ratio"] == pytest.approx(2)
    )
    with pytest.raises(PeRenalError, match="shape"):
        localisation(cam, mask[:5])


def test_hooks_released_and_no_memory_growth():
    sig, x, _ = _known_case(seed=0)
    layer = sig.backbone.layer4[-1]
    for _ in range(3):
        compute_cams(sig, x)
    assert len(layer._forward_hooks) == 0 and len(layer._backward_hooks) == 0
    before = memory_in_use_mb()
    for _ in range(30):
        compute_cams(sig, x)
    assert memory_in_use_mb() - before < 20
    mid = memory_in_use_mb()
    kept = [np.ones(40_000_000 // 8) for _ in range(1)]                # a control: 40 MB kept alive is seen
    assert memory_in_use_mb() - mid > 30
    del kept


def memory_in_use_mb() -> float:
    "Resident memory after gc and glibc's malloc_trim (freed heap returned to the system); not the peak (ru_maxrss)."
    import ctypes
    import psutil
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pytest.skip("no glibc: freed memory cannot be told from memory in use")
    return psutil.Process().memory_info().rss / 1e6


def test_explain_images_on_a_synthetic_cohort(tmp_path):
    from pe_renal.synthetic import make_cohort
    from pe_renal.data import load_cohort
    c = load_cohort(make_cohort(tmp_path / "c", n=12, seed=1))
    bb = load_backbone("resnet18", "random")
    tf = FeatureTransform(size=96)
    x = torch.stack([tf(c.image(i)) for i in range(c.n_images)])
    with torch.inference_mode():
        F = bb.model(x).numpy()
    sig = DeepSignature(bb.model, [0, 1, 2], F[:, :3].mean(0), F[:, :3].std(0) + 1e-6, np.array([1.0, -0.5, 0.3]), 0.1)
    items = explain_images(c, [0, 1, 2], sig, "resnet18", transform=tf)
    t = checks_table(items)
    assert (
        len(t) == 3
        and t["kidney_energy_inside"].between(0, 1).all()
        and t["kidney_area_fraction"].between(0.2, 0.9).all()
    )
    assert t["randomisation_spearman"].between(-1, 1).all()
    for it in items:
        assert it["cam"].shape == it["roi"].shape == it["truth"].shape
