"""Grad-CAM on a named ResNet stage: a known answer where the finer stage must localise and the last block cannot,
the randomised comparison on the same stage, and the study / command-line settings."""
import numpy as np
import pytest
import torch

from pe_renal.core import PeRenalError
from pe_renal.features import FeatureTransform
from pe_renal.backbones import load_backbone
from pe_renal.gradcam import CAM_LAYERS, _known_case, cam_methods, compute_cams, explain_images, target_layer
from pe_renal.settings import GRADCAM_LAYERS, GRADCAM_METHODS
from pe_renal.study import StudyConfig


def _ratio(m, blob): return float((m * blob).sum() / m.sum()) / blob.mean() if m.sum() > 0 else 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_finer_stage_finds_a_small_blob_that_the_last_block_cannot(seed):
    "Random ResNet18 at 128 px, a signature of the channels a small blob (4.5% of the image) switches on."
    sig, x, blob = _known_case(load_backbone("resnet18", "random", seed=seed).model, size=128, seed=seed)
    last = _ratio(compute_cams(sig, x, "gradcam")[0], blob)                     # 4 x 4 cells: cannot resolve the blob
    l3, l2 = (_ratio(compute_cams(sig, x, "hirescam", layer)[0], blob) for layer in ("layer3", "layer2"))
    assert last < 1.5                                                            # negative control: the coarse map
    assert l3 > 2.5 and l2 > 4.0                                                 # measured 3.3-4.0 and 5.2-5.5
    assert _ratio(compute_cams(sig, x, "gradcam", "layer4")[0], blob) == pytest.approx(last)   # "layer4" = the default


def test_layer_names_resolve_and_bad_names_are_clear_errors():
    m = load_backbone("resnet18", "random").model
    assert target_layer(m, "layer3") is m.layer3[-1] and target_layer(m, "layer2") is m.layer2[-1]
    assert target_layer(m) is m.layer4[-1]
    with pytest.raises(PeRenalError, match="layer5"):
        target_layer(m, "layer5")
    with pytest.raises(PeRenalError, match="ResNet stage"):
        target_layer(torch.nn.Sequential(torch.nn.Conv2d(3, 3, 1)), "layer3")
    assert GRADCAM_LAYERS == CAM_LAYERS                                           # the study's names are the module's
    assert GRADCAM_METHODS == tuple(cam_methods())                                # and so are the CAM methods' names


def test_randomised_comparison_uses_the_same_stage(tmp_path, monkeypatch):
    from pe_renal import gradcam
    from pe_renal.data import load_cohort
    from pe_renal.finetune_parts import LinearHead
    from pe_renal.gradcam import head_signature
    from pe_renal.synthetic import make_cohort
    c = load_cohort(make_cohort(tmp_path / "c", n=10, seed=2, n_jobs=1))
    bb = load_backbone("resnet18", "random")
    head = LinearHead(torch.zeros(512), torch.ones(512))
    torch.nn.init.normal_(head.linear.weight, std=0.05)
    seen, real = [], gradcam.compute_cams
    def spy(signature, x, method="gradcam", layer=None, **kw):
        seen.append((signature.backbone, layer))
        return real(signature, x, method, layer, **kw)

    monkeypatch.setattr(gradcam, "compute_cams", spy)
    items = explain_images(
        c, [0, 1], head_signature((bb, head)), "resnet18", FeatureTransform(size=64), method="hirescam", layer="layer3"
    )
    assert [l for _, l in seen] == ["layer3", "layer3"] and seen[0][0] is bb.model and seen[1][0] is not bb.model
    assert all(np.isfinite(it["randomisation_spearman"]) or not it["cam"].any() for it in items)


def test_study_and_cli_settings():
    cfg = StudyConfig(backbone="resnet18", finetune="full", gradcam_layer="layer3", gradcam_method="hirescam")
    assert (cfg.gradcam_layer, cfg.gradcam_method) == ("layer3", "hirescam")
    assert StudyConfig().gradcam_layer == "layer4" and StudyConfig().gradcam_method == "gradcam"  # the paper's default
    with pytest.raises(PeRenalError, match="gradcam_layer"):
        StudyConfig(gradcam_layer="layer1")
    with pytest.raises(PeRenalError, match="ResNet stage"):
        StudyConfig(backbone="densenet121", gradcam_layer="layer3")
    from pe_renal.cli import build_parser
    from pe_renal.commands import config_of
    args = build_parser().parse_args(["run", "C", "--out", "R", "--backbone", "resnet18", "--gradcam-layer", "layer2",
                                      "--gradcam-method", "hirescam"])
    cfg = config_of(args)
    assert (cfg.gradcam_layer, cfg.gradcam_method) == ("layer2", "hirescam")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "C", "--out", "R", "--gradcam-layer", "layer1"])


def test_a_fine_tuned_backbone_leads_with_maps_that_localise_and_the_paper_is_one_option_away():
    from pe_renal.cli import build_parser
    from pe_renal.commands import config_of
    from pe_renal.quoted import gradcam_choice
    paper, fine = ("signature", "gradcam", "layer4"), ("predicted", "hirescam", "layer2")
    cfg3 = lambda c: (c.gradcam_target, c.gradcam_method, c.gradcam_layer)
    assert cfg3(StudyConfig()) == paper                                            # frozen backbone: the paper's maps
    assert cfg3(StudyConfig(finetune="head")) == paper                             # the backbone is not changed either
    for mode in ("last", "full"):
        assert cfg3(StudyConfig(backbone="resnet18", finetune=mode)) == fine       # fine-tuned: maps that localise
        assert cfg3(StudyConfig(backbone="resnet18", finetune=mode, gradcam="paper")) == paper
    assert cfg3(StudyConfig(finetune="head", gradcam="fine")) == fine
    assert cfg3(StudyConfig(finetune="full", gradcam_layer="layer3")) == (
        "predicted",
        "hirescam",
        "layer3",
    )  # one by one
    assert cfg3(StudyConfig(backbone="densenet121", finetune="full")) == (
        "predicted",
        "hirescam",
        "layer4",
    )  # no stages
    with pytest.raises(PeRenalError, match="--gradcam"):
        StudyConfig(gradcam="best")
    with pytest.raises(PeRenalError, match="fine-tuned head"):
        StudyConfig(gradcam="fine")
    # what run.json and the report say: which configuration, why, and the other one's option
    c = gradcam_choice(StudyConfig(backbone="resnet18", finetune="full"))
    assert (
        (c["preset"], c["other"]) == ("fine", "--gradcam paper")
        and "gradcam_finetune.md" in c["why"]
        and "default" in c["why"]
    )
    c = gradcam_choice(StudyConfig(backbone="resnet18", finetune="full", gradcam_target="head"))
    assert c["why"].endswith("changed by the options: target head")
    c = gradcam_choice(StudyConfig())
    assert (c["preset"], c["other"]) == ("paper", "--gradcam fine") and "changed" not in c["why"]
    parse = lambda *a: config_of(build_parser().parse_args(["run", "C", "--out", "R", "--backbone", "resnet18", *a]))
    assert (
        cfg3(parse("--finetune", "full")) == fine and cfg3(parse("--finetune", "full", "--gradcam", "paper")) == paper
    )
    assert cfg3(parse()) == paper
