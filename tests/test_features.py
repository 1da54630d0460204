"""Deep features: order, aggregation, cache behaviour (kept when the cache cannot be written), weights options, image
flavours, non-finite features named with their images, and controls."""
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pe_renal.core import PeRenalError
from pe_renal.data import load_cohort
from pe_renal.features import FeatureTransform, aggregate_features, cohort_features, extract_features
from pe_renal.backbones import WeightsUnavailable, load_backbone

from conftest import cli, refused, write_cohort

SMALL = dict(backbone="resnet18", weights="random", transform=FeatureTransform(size=64), show_progress=False)


@pytest.fixture(scope="module")
def small_cohort(tmp_path_factory):
    return load_cohort(write_cohort(tmp_path_factory.mktemp("f") / "c", n=10, images_per_patient=2))


def test_shape_order_and_metadata(small_cohort, tmp_path):
    f = extract_features(small_cohort, cache=tmp_path, **SMALL)
    assert f.shape == (20, 512) and list(f.columns[:2]) == ["deep_0000", "deep_0001"]
    assert f.index.equals(small_cohort.images.index)
    meta = f.attrs["pe_renal"]
    assert meta["weights"] == "random:seed0" and meta["untrained"] and "UNTRAINED" in meta["note"]
    # output order follows input order, whatever it is
    shuffled = small_cohort.images.sample(frac=1, random_state=1)
    g = extract_features(shuffled, cache=False, **SMALL)
    np.testing.assert_allclose(
        g.loc[f.index].to_numpy(), f.to_numpy(), rtol=1e-2, atol=1e-3 * np.abs(f.to_numpy()).max()
    )
    # different images give different features
    assert not np.allclose(f.iloc[0], f.iloc[1])


def test_fp32_matches_batch_size_and_workers(small_cohort):
    a = extract_features(small_cohort, cache=False, precision="fp32", batch_size=3, num_workers=0, **SMALL)
    b = extract_features(small_cohort, cache=False, precision="fp32", batch_size=8, num_workers=1, **SMALL)
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=1e-4, atol=1e-5 * np.abs(a.to_numpy()).max())


def test_per_patient_mean_aggregation(small_cohort):
    f = extract_features(small_cohort, cache=False, **SMALL)
    p = aggregate_features(f, small_cohort)
    assert list(p.index) == small_cohort.clinical["patient_id"].tolist() and p.index.name == "patient_id"
    rows = small_cohort.images.index[small_cohort.images["patient_id"] == "P03"]
    np.testing.assert_allclose(p.loc["P03"].to_numpy(), f.loc[rows].mean().to_numpy(), rtol=1e-5)
    np.testing.assert_allclose(aggregate_features(f, small_cohort, how="max").loc["P03"], f.loc[rows].max(), rtol=1e-6)
    with pytest.raises(PeRenalError, match="how"):
        aggregate_features(f, small_cohort, how="sum")


def test_cache_hit_miss_invalidation(small_cohort, tmp_path):
    a = extract_features(small_cohort, cache=tmp_path, **SMALL)
    assert a.attrs["pe_renal"]["n_cached"] == 0
    b = extract_features(small_cohort, cache=tmp_path, **SMALL)
    assert b.attrs["pe_renal"]["n_cached"] == 20
    np.testing.assert_array_equal(a.to_numpy(), b.to_numpy())
    # any setting that changes the features is a different key: a miss (two cached images are enough to see it)
    other = "bf16" if a.attrs["pe_renal"]["precision"] == "fp32" else "fp32"
    for kw in (dict(transform=FeatureTransform(size=64, resize="stretch")), dict(precision=other),
               dict(weights="random", seed=1)):
        c = extract_features(small_cohort.images.iloc[:2], cache=tmp_path, **{**SMALL, **kw})
        assert c.attrs["pe_renal"]["n_cached"] == 0, kw
    # a changed image (same name) is a miss for that image only
    p = Path(small_cohort.images["abspath"].iloc[0])
    Image.fromarray(np.full((40, 50), 77, np.uint8)).save(p)
    d = extract_features(small_cohort, cache=tmp_path, **SMALL)
    assert d.attrs["pe_renal"]["n_cached"] == 19
    assert not np.allclose(d.iloc[0], a.iloc[0]) and np.allclose(d.iloc[1:], a.iloc[1:])
    # a moved ROI is a miss too
    imgs = small_cohort.images.copy()
    imgs.loc[imgs.index[1], "x1"] = 40
    e = extract_features(imgs, cache=tmp_path, **SMALL)
    assert e.attrs["pe_renal"]["n_cached"] == 19


def test_renamed_image_is_still_a_hit(small_cohort, tmp_path):
    extract_features(small_cohort, cache=tmp_path, **SMALL)
    imgs = small_cohort.images.copy()
    src = Path(imgs["abspath"].iloc[2])
    dst = src.with_name("renamed.png")
    dst.write_bytes(src.read_bytes())
    imgs.loc[imgs.index[2], "abspath"] = str(dst)
    assert extract_features(imgs, cache=tmp_path, **SMALL).attrs["pe_renal"]["n_cached"] == 20


def test_corrupt_cache_is_detected_and_recomputed(small_cohort, tmp_path):
    a = extract_features(small_cohort, cache=tmp_path, **SMALL)
    shards = list(tmp_path.rglob("*.parquet"))
    assert len(shards) == 1
    raw = bytearray(shards[0].read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # flip one byte
    shards[0].write_bytes(bytes(raw))
    b = extract_features(small_cohort, cache=tmp_path, **SMALL)
    assert b.attrs["pe_renal"]["n_cached"] == 0
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=1e-5)
    assert list(tmp_path.rglob("*.corrupt"))
    assert extract_features(small_cohort, cache=tmp_path, **SMALL).attrs["pe_renal"]["n_cached"] == 20


def test_no_temporary_files_left_in_cache(small_cohort, tmp_path):
    extract_features(small_cohort, cache=tmp_path, **SMALL)
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def test_weights_from_file_and_wrong_file(tmp_path):
    torch.save(load_backbone("resnet18", "random", seed=5).model.state_dict(), tmp_path / "w.pth")
    bb = load_backbone("resnet18", str(tmp_path / "w.pth"))
    assert bb.weights.startswith("file:") and not bb.untrained
    ref = load_backbone("resnet18", "random", seed=5)
    for p, q in zip(bb.model.parameters(), ref.model.parameters()):
        assert torch.equal(p, q)
    (tmp_path / "junk.pth").write_text("not weights")
    with pytest.raises(PeRenalError, match="junk.pth"):
        load_backbone("resnet18", str(tmp_path / "junk.pth"))
    with pytest.raises(PeRenalError, match="do not fit"):
        load_backbone("resnet34", str(tmp_path / "w.pth"))


def test_unavailable_imagenet_weights_give_instructions(monkeypatch, tmp_path):
    monkeypatch.setenv("PE_RENAL_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsUnavailable) as e:
        load_backbone("resnet152", "imagenet")
    msg = str(e.value)
    assert "resnet152-f82ba261.pth" in msg and str(tmp_path / "hub" / "checkpoints") in msg
    assert "--weights random" in msg and "TORCH_HOME" in msg
    # only an explicit fallback substitutes an untrained network, and it says so
    bb = load_backbone("resnet18", "imagenet", fallback=True)
    assert (
        bb.untrained and bb.weights == "random:seed0" and "ImageNet weights for resnet18 were not available" in bb.note
    )


def test_imagenet_weights_are_read_from_the_torch_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("PE_RENAL_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    import torchvision
    w = torchvision.models.ResNet18_Weights.DEFAULT
    full = torchvision.models.resnet18(weights=None)
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(full.state_dict(), tmp_path / "hub" / "checkpoints" / os.path.basename(w.url))
    bb = load_backbone("resnet18", "imagenet")
    assert bb.weights == f"imagenet:{w.name}" and not bb.untrained


def test_16bit_and_rgba_images(tmp_path):
    root = write_cohort(tmp_path / "c", n=10)
    g = np.linspace(0, 1, 40 * 50).reshape(40, 50)
    tifffile.imwrite(root / "images" / "p00_0.tif", (g * 65535).astype(np.uint16))
    rgba = np.dstack([np.repeat((g * 255).astype(np.uint8)[..., None], 3, -1), np.full((40, 50), 255, np.uint8)])
    Image.fromarray(rgba).save(root / "images" / "p01_0.png")
    Image.fromarray((g * 255).astype(np.uint8)).save(root / "images" / "p02_0.png")
    df = pd.read_csv(root / "images.csv")
    df.loc[0, "path"] = "images/p00_0.tif"
    df.to_csv(root / "images.csv", index=False)
    with pytest.warns(UserWarning, match="3 pair.s. of near-identical images belong to different patients"):
        cohort = load_cohort(root)                 # the same picture for three patients: said, as it should be
    f = extract_features(cohort, cache=False, precision="fp32", **{k: v for k, v in SMALL.items()})
    # the same picture as 16-bit TIFF, RGBA PNG and 8-bit gray PNG gives (nearly) the same features
    cos = lambda a, b: float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    assert cos(f.iloc[0].to_numpy(), f.iloc[2].to_numpy()) > 0.999
    assert cos(f.iloc[1].to_numpy(), f.iloc[2].to_numpy()) > 0.999


def test_bad_options(small_cohort):
    with pytest.raises(PeRenalError, match="unknown backbone"):
        load_backbone("alexnet9")
    with pytest.raises(PeRenalError, match="precision"):
        extract_features(["x.png"], precision="int8", **{k: v for k, v in SMALL.items()})
    for bad in (0, -1, 2.5, True):
        with pytest.raises(PeRenalError, match="batch_size must be a whole number"):
            extract_features(small_cohort, batch_size=bad, cache=False, **SMALL)
    if not torch.cuda.is_available():
        with pytest.raises(PeRenalError, match="no CUDA"):
            extract_features(["x.png"], device="cuda", **SMALL)


def test_batchnorm_folding_keeps_the_features_and_the_backbone():
    from pe_renal.features import fold_batchnorm
    bb = load_backbone("resnet18", "random")
    folded = fold_batchnorm(bb.model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in bb.model.modules()) == 20     # the backbone is untouched
    x = torch.randn(3, 3, 96, 96)
    with torch.inference_mode():
        a, b = bb.model(x), folded(x)
    assert ((b - a).abs().max() / a.abs().max()).item() < 1e-5                   # fp32 rounding only

    class DataDependent(torch.nn.Module):                 # torch.fx cannot trace this: a plain copy is run
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.tensor(2.0))

        def forward(self, x): return self.scale * (x if x.sum() > 0 else -x)
    m = DataDependent()
    c = fold_batchnorm(m)
    assert isinstance(c, DataDependent) and c is not m and c.scale is not m.scale
    torch.testing.assert_close(c(x), m(x))


def test_bad_batch_size_is_refused_even_when_every_image_is_cached(small_cohort, tmp_path):
    a = extract_features(small_cohort, cache=tmp_path, device="cpu", **SMALL)
    assert a.attrs["pe_renal"]["batch_size"] == 8                            # the CPU default, recorded
    with pytest.raises(PeRenalError, match="batch_size must be a whole number"):
        extract_features(small_cohort, cache=tmp_path, batch_size=0, **SMALL)


def test_extraction_leaves_the_backbone_as_it_was(small_cohort):
    bb = load_backbone("resnet18", "random")
    before = {k: v.clone() for k, v in bb.model.state_dict().items()}
    extract_features(small_cohort, bb, cache=False, **{k: v for k, v in SMALL.items() if k != "backbone"})
    after = bb.model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in bb.model.modules()) == 20
    w = bb.model.conv1.weight
    assert w.device.type == "cpu" and not w.is_contiguous(memory_format=torch.channels_last)


def test_bf16_probes_exist_in_this_pytorch():
    "cpu_bf16_kernels relies on these probes; if PyTorch renames them, auto precision would quietly stay fp32."
    assert callable(torch.cpu._is_amx_tile_supported) and callable(torch.cpu._is_avx512_bf16_supported)


class _NoClock:
    "Stands in for the time module: any look at a clock fails the test."

    def __getattr__(self, name):
        pytest.fail(f"precision_choice looked at time.{name}: the choice must not depend on timing")


@pytest.mark.parametrize("kernels", [False, True])
def test_auto_precision_follows_the_hardware_never_a_stopwatch(monkeypatch, kernels):
    "auto: fp32 on a CPU without bf16 kernels, bf16 on one with them (guarded), bf16/fp16 on CUDA; no clock is read."
    import pe_renal.features as F
    monkeypatch.setattr(F, "cpu_bf16_kernels", lambda: kernels)
    monkeypatch.setattr(F, "time", _NoClock())
    cpu, bb = torch.device("cpu"), load_backbone("resnet18", "random")
    want = "bf16" if kernels else "fp32"
    got = []
    for threads in (1, 2):                                          # the thread count does not enter either
        torch.set_num_threads(threads)
        got.append(F.precision_choice("auto", cpu, bb, size=64))
    torch.set_num_threads(1)
    assert got[0] == got[1] and got[0]["precision"] == want, got
    assert got[0]["rule"] == F.PRECISION_RULE and "never by timing" in got[0]["rule"]
    assert (
        ("agree" in got[0]["reason"] and got[0]["agreement"]["min_cosine"] >= 0.999)
        if kernels
        else "no native bf16" in got[0]["reason"]
    )
    for asked in ("fp32", "bf16", "fp16"):  # asked for: honoured on any machine
        assert F.precision_choice(asked, cpu, bb) == dict(
            precision=asked, asked=asked, rule="asked for", reason=f"{asked} was asked for"
        )
    with pytest.raises(PeRenalError, match="precision"):
        F.resolve_precision("int8", cpu)
    for native, prec in ((True, "bf16"), (False, "fp16")):
        monkeypatch.setattr(F, "cuda_bf16", lambda native=native: native)
        assert F.resolve_precision("auto", torch.device("cuda")) == prec


def test_the_bf16_guard_keeps_fp32_for_a_network_that_disagrees(monkeypatch):
    "On a CPU with bf16 kernels, a network whose bf16 features drift from fp32 ones stays in fp32, and says why."
    import pe_renal.features as F
    monkeypatch.setattr(F, "cpu_bf16_kernels", lambda: True)
    bb = load_backbone("resnet18", "random")
    class Drift(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):  # as resnet18 in fp32; in bf16, noise as large as the features
            f = self.m(x)
            if torch.is_autocast_enabled("cpu"):
                f = f + torch.randn(f.shape, generator=torch.Generator().manual_seed(0)) * f.abs().mean()
            return f
    bad = F.Backbone(Drift(bb.model), "drift", "drift:test", bb.dim, True, "test")
    ch = F.precision_choice("auto", torch.device("cpu"), bad, size=64)
    assert ch["precision"] == "fp32" and not ch["agreement"]["agrees"] and "disagree" in ch["reason"], ch


def test_bf16_features_agree_with_fp32(small_cohort):
    "Real bf16 arithmetic (emulated where the CPU has no bf16 kernels): features agree per image."
    kw = {k: v for k, v in SMALL.items()}
    f32 = extract_features(small_cohort, cache=False, precision="fp32", **kw).to_numpy()
    b16 = extract_features(small_cohort, cache=False, precision="bf16", **kw)
    assert b16.attrs["pe_renal"]["precision_choice"] == dict(
        precision="bf16", asked="bf16", rule="asked for", reason="bf16 was asked for"
    )
    b16 = b16.to_numpy()
    cos = (f32 * b16).sum(1) / np.linalg.norm(f32, axis=1) / np.linalg.norm(b16, axis=1)
    assert cos.min() >= 0.999 and not np.array_equal(f32, b16), cos.min()   # bf16 really ran, and agrees


@pytest.mark.parametrize("kernels", [False, True])
def test_features_record_why_auto_chose_its_precision(small_cohort, monkeypatch, kernels):
    import pe_renal.features as F
    monkeypatch.setattr(F, "cpu_bf16_kernels", lambda: kernels)
    f = extract_features(small_cohort, cache=False, **SMALL)
    ch = f.attrs["pe_renal"]["precision_choice"]
    assert ch["asked"] == "auto" and ch["precision"] == f.attrs["pe_renal"]["precision"] == (
        "bf16" if kernels else "fp32"
    )
    assert ch["rule"] == F.PRECISION_RULE and ("agree with fp32" if kernels else "no native bf16") in ch["reason"], ch


def _held_out_auc(root):
    c = load_cohort(root)
    X = cohort_features(c, backbone="resnet18", weights="random", cache=False, transform=FeatureTransform(size=96),
                        show_progress=False).to_numpy()
    y = c.clinical["label"].to_numpy()
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=5000))
    return cross_val_score(model, X, y, cv=StratifiedKFold(5, shuffle=True, random_state=0), scoring="roc_auc").mean()


@pytest.mark.slow
def test_positive_and_negative_control(synthetic_signal, synthetic_null):
    """Deep features of the synthetic cohort separate the classes on held-out folds; with effect 0 they do not (the
    session's two shared cohorts of 120 women, one image each)."""
    pos, neg = _held_out_auc(synthetic_signal), _held_out_auc(synthetic_null)
    assert pos > 0.65, pos
    assert 0.35 < neg < 0.62, neg
    assert pos - neg > 0.1


def test_cli_features(small_cohort, tmp_path, capsys, monkeypatch):
    "`pe-renal features` in this process (the installed command starts in tests/test_study.py and test_synthetic.py)."
    out = tmp_path / "f.parquet"
    code, stdout, err = cli(capsys, "features", small_cohort.root, "--out", out, "--backbone", "resnet18", "--weights",
                            "random", "--cache", tmp_path / "cache")
    assert code == 0, err
    assert "UNTRAINED" in stdout
    df = pd.read_parquet(out)
    assert df.shape == (10, 512) and df.index.name == "patient_id"
    assert json.loads((tmp_path / "f.parquet.json").read_text())["weights"] == "random:seed0"
    from pe_renal.cli import main

    assert (
        main(["features", str(small_cohort.root), "--out", str(out), "--backbone", "resnet18", "--weights", "random"])
        == 2
    )
    err = capsys.readouterr().err
    assert "already exists" in err and "Traceback" not in err
    monkeypatch.setenv("PE_RENAL_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    assert main(["features", str(small_cohort.root), "--out", str(tmp_path / "g.parquet"), "--weights", "imagenet",
                 "--backbone", "resnet18"]) == 2
    err = capsys.readouterr().err
    assert "resnet18-f37072fd.pth" in err and "Traceback" not in err
    assert not (tmp_path / "g.parquet").exists()


def test_cache_folder_follows_xdg_and_pe_renal_cache_overrides(monkeypatch, tmp_path):
    import pe_renal.features as F
    monkeypatch.delenv("PE_RENAL_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert F.default_cache_dir() == tmp_path / "xdg" / "pe_renal" / "features"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")                # not absolute: ignored, as the XDG rule says
    assert F.default_cache_dir() == Path.home() / ".cache" / "pe_renal" / "features"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert F.default_cache_dir() == Path.home() / ".cache" / "pe_renal" / "features"
    monkeypatch.setenv("PE_RENAL_CACHE", str(tmp_path / "own"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert F.default_cache_dir() == tmp_path / "own" / "features"


def test_the_test_session_never_touches_the_users_cache():
    "conftest gives the session a throw-away cache: nothing a test computes lands in ~/.cache/pe_renal."
    from pe_renal.features import default_cache_dir

    assert "pe_renal_tests_" in str(default_cache_dir()) and not str(default_cache_dir()).startswith(
        str(Path.home() / ".cache")
    )


# ---- features: non-finite values, an unwritable cache, an empty weights option ---------------------------------------

def test_non_finite_features_name_the_images_and_a_fix_that_applies(cohort_dir):
    "A network that overflows on one image in fp32: the message names that image and does not advise fp32 again."
    import torch
    from pe_renal.data import load_cohort
    from pe_renal.backbones import Backbone
    from pe_renal.features import extract_features

    class Overflows(torch.nn.Module):
        def forward(self, x):
            m = x.mean(dim=(1, 2, 3), keepdim=True).flatten(1)
            return torch.where(m > m.max() - 1e-6, torch.full_like(m, float("inf")), m).repeat(1, 4)

    bb = Backbone(Overflows(), "overflows", "random:test", 4, untrained=True)
    cohort = load_cohort(cohort_dir)
    with pytest.raises(PeRenalError) as e:
        extract_features(
            cohort, bb, device="cpu", precision="fp32", batch_size=len(cohort.images), cache=False, show_progress=False
        )
    msg = str(e.value)
    assert "1 image(s): images/p" in msg and "check the images" in msg and "--precision fp32" not in msg


def test_an_unwritable_cache_keeps_the_computed_features(capsys, cohort_dir, tmp_path):
    (tmp_path / "afile").write_text("a file where the cache folder should be")
    out = tmp_path / "f.parquet"
    code, stdout, err = cli(
        capsys, "features", cohort_dir, "--out", out, "--weights", "random", "--backbone", "resnet18", "--cache",
        tmp_path / "afile" / "cache"
    )
    assert code == 0 and out.is_file() and len(pd.read_parquet(out)) == 20, err
    assert "could not be written" in err and "afile" in err


def test_an_empty_weights_option_is_named(capsys, cohort_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    refused(capsys, "features", cohort_dir, "--out", tmp_path / "f.csv", "--backbone", "resnet18", "--weights", "",
            says=["--weights"])
