"""SHAP and Grad-CAM speed and memory.

    .venv/bin/python benchmarks/bench_interpretability.py [--images 100]

- SHAP for the 84 test patients of the default demo composite model (279 women, 2048 simulated deep
  features): aim under 30 s.
- Grad-CAM of the deep signature on ResNet152, CPU: aim under 0.5 s per image, and no memory growth
  over the images (hooks released): RSS after the first batch vs after all of them. glibc keeps freed
  memory of the backward pass for reuse, so the RSS wanders by a few hundred MB from batch to batch;
  the leak check reads it after malloc_trim(0), which returns that memory to the system.
"""
import argparse
import os
import resource
import time
os.environ.setdefault("PE_RENAL_QUIET", "1")
import numpy as np
import torch

from pe_renal.models import demo_data, fit_models
from pe_renal.shap import explain_model, importance
from pe_renal.backbones import load_backbone
from pe_renal.gradcam import DeepSignature, compute_cams


def rss_mb(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6   # ru_maxrss is in KiB


def malloc_trim():
    "Return freed heap memory to the system (glibc); False where there is no glibc."
    try:
        import ctypes
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0) or True)
    except (OSError, AttributeError):
        return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--batch", type=int, default=8)
    a = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    data = demo_data(n=279, seed=0)
    t = time.perf_counter()
    fitted, _ = fit_models(data)
    t_fit = time.perf_counter() - t
    Xtr, _ = data.part("train")
    Xte, _ = data.part("test")
    t = time.perf_counter()
    ex = explain_model(fitted["Composite"], Xtr, Xte, seed=42)
    t_shap = time.perf_counter() - t
    fam = importance(ex)["family"]
    print(f"SHAP: {len(Xte)} test patients x {ex.values.shape[1]} inputs in {t_shap:.1f} s (aim < 30 s); "
          f"deep share {fam.loc['deep', 'share_of_total']:.2f}; models fitted in {t_fit:.1f} s")
    bb = load_backbone("resnet152", "random")
    rng = np.random.default_rng(0)
    idx = rng.choice(2048, 30, replace=False)
    sig = DeepSignature(bb.model, idx, np.zeros(30), np.ones(30), rng.normal(size=30), 0.0)
    x = torch.randn(a.images, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    import psutil
    proc = psutil.Process()
    compute_cams(sig, x[: a.batch], batch_size=a.batch)                   # warm-up
    rss, kept, maps, t_cam = [], [], [], 0.0
    for i in range(0, a.images, a.batch):  # one call per batch: hooks added and released each time
        t = time.perf_counter()
        maps.append(compute_cams(sig, x[i : i + a.batch], batch_size=a.batch))
        t_cam += time.perf_counter() - t
        rss.append(proc.memory_info().rss / 1e6)
        trimmed = malloc_trim()
        kept.append(proc.memory_info().rss / 1e6)
    print(
        f"Grad-CAM ResNet152 (fp32, CPU, batch {a.batch}): {a.images} images in {t_cam:.1f} s = "
            f"{t_cam / a.images:.3f} s/image "
        f"(aim < 0.5); hooks left on layer4: {len(bb.model.layer4[-1]._forward_hooks)}"
    )
    print(
        f"  RSS after batch 1: {rss[0]:.0f} MB, after the last: {rss[-1]:.0f} MB (max {max(rss):.0f}, peak "
            f"{rss_mb():.0f})"
    )
    if trimmed:
        print(
            f"  memory in use (RSS after malloc_trim) after batch 1: {kept[0]:.0f} MB, after the last: "
                f"{kept[-1]:.0f} MB "
            f"-> growth {kept[-1] - kept[0]:+.0f} MB over {a.images} images (aim: none)"
        )
    assert np.concatenate(maps).shape == (a.images, 224, 224)


if __name__ == "__main__":
    main()
