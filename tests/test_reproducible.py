"""The same study, the same numbers: precision and results depend on the inputs, the settings and the hardware's
capabilities, never on the thread count, the load or the state of a cache, on every precision path. (Whole runs with 1
and 2 threads and fresh caches are compared in tests/test_study.py,
test_interrupted_runs_leave_no_results_folder_and_reruns_give_the_same_results.)"""

import pytest
import torch


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_finetuning_weights_do_not_depend_on_the_thread_count(ft_small_cohort, precision):
    """The learning steps run on a fixed number of CPU threads and the frozen trunk gives the same outputs on any
    number:
    bf16 weights are bit-identical with 1 and 2 threads; fp32 ones agree to rounding (a residual of ~1e-4 in the largest
    weight difference, seen on one machine, that left a study's tables unchanged). The cohort: 30 women, one image
    each, written once per session (tests/conftest.py)."""
    from pe_renal.data import load_cohort
    from pe_renal.split import split_cohort
    from pe_renal.features import FeatureTransform
    from pe_renal.backbones import load_backbone
    from pe_renal.finetune import finetune_backbone
    c = load_cohort(ft_small_cohort)
    s = split_cohort(c, seed=0)
    tr = s.loc[s.split == "train", "patient_id"].tolist()
    weights, before = [], torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            r = finetune_backbone(c, tr, load_backbone("resnet18", "random"), mode="last", seed=0, epochs=2, views=2,
                                  precision=precision, transform=FeatureTransform(size=48), show_progress=False)
            assert torch.get_num_threads() == threads                  # left as it was found
            weights.append(r.backbone.model.state_dict())
    finally:
        torch.set_num_threads(before)
    diff = max(float((weights[0][k].float() - weights[1][k].float()).abs().max()) for k in weights[0])
    assert diff == 0.0 if precision == "bf16" else diff < 1e-3, diff


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_deep_features_do_not_depend_on_the_thread_count(ft_small_cohort, precision):
    """Feature extraction on each precision path, forced whatever this CPU offers (bf16 autocast runs on any x86 CPU,
    emulated where it has no bf16 kernels): the same images give bit-identical features with 1, 2 and 3 threads. A
    whole study's tables are compared across thread counts on the path `precision="auto"` takes on this CPU
    (tests/test_study.py); this checks the other path too. The cohort: 30 women, one image each (tests/conftest.py)."""
    from pe_renal.data import load_cohort
    from pe_renal.features import FeatureTransform, extract_features
    from pe_renal.backbones import load_backbone
    c, bb, before, got = load_cohort(ft_small_cohort), load_backbone("resnet18", "random"), torch.get_num_threads(), []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            f = extract_features(c, bb, device="cpu", precision=precision, cache=False, batch_size=8,
                                 transform=FeatureTransform(size=48), show_progress=False)
            assert f.attrs["pe_renal"]["precision"] == precision and f.attrs["pe_renal"]["n_cached"] == 0
            got.append(f)
    finally:
        torch.set_num_threads(before)
    assert got[0].notna().all().all() and got[0].to_numpy().std() > 0
    for g in got[1:]:
        assert (g.to_numpy() == got[0].to_numpy()).all(), float(abs(g.to_numpy() - got[0].to_numpy()).max())
