"""Deep-feature extraction on CPU: throughput, cache speed-up, memory and bf16 agreement, in one run.

    .venv/bin/python benchmarks/bench_features.py [--images 160] [--rss 100 1000] [--precisions] [--try-jit]
    [--try-compile]

Prints, all measured in this run on the same images:
  auto        the precision extract_features picks on this CPU and why (by capability, never by timing: fp32 without
              AMX or AVX512-BF16; with them bf16, guarded by a deterministic agreement check), and what deciding it took
  naive       one image at a time, fp32, PIL + torchvision transforms, forward hook on avgpool (typical script)
  bare        the network pe_renal runs (BatchNorm folded) alone on ready-made tensors, same batch size and
              precision, channels_last; 'unfolded' is the torchvision model as it comes
  precisions  (--precisions) the bare model in fp32, bf16 and fp16 autocast, to see which is fastest on this CPU:
              timing is measured here, as a benchmark, and never decides the precision of a study
  pe_renal    extract_features() from the image files (decode, ROI, transform, DataLoader, model)
  ratios      pe_renal / bare (aim >= 0.85), pe_renal / naive (aim >= 2.0); on a shared CPU only the ratios of
              one run mean anything, the absolute img/s move with the other load
  cache       cold extraction vs re-run with a warm cache (aim >= 50x)
  agreement   cosine similarity of bf16 vs fp32 features per image (aim >= 0.999)
  jit/compile (--try-jit, --try-compile) TorchScript freezing and torch.compile with inductor freezing (oneDNN
              weight prepacking), against eager in the same precision; compile time is printed too
  peak RSS    of a fresh process extracting 100 and 1000 images (aim < 2.5 GB, flat in the number of images)
"""
import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PE_RENAL_QUIET", "1")
import numpy as np
import torch

from pe_renal.data import load_cohort
from pe_renal.features import fold_batchnorm, cpu_bf16_kernels, extract_features, precision_choice
from pe_renal.backbones import load_backbone
from pe_renal.synthetic import make_cohort

BACKBONE = "resnet152"


def cohort_with(n_images, root):
    "A synthetic cohort with at least n_images images (about 1.5 per patient)."
    n = max(10, int(np.ceil(n_images / 1.45)))
    c = load_cohort(make_cohort(root, n=n, seed=0), check_images=False)
    return c, c.images.iloc[:n_images]


def naive(table, model):
    "The typical deep-radiomics loop: PIL image, torchvision transforms, batch of 1, fp32, hook on avgpool."
    from PIL import Image
    import torchvision.transforms as T
    tf = T.Compose([T.Resize((224, 224)), T.ToTensor(), T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    feats = []
    hook = model.avgpool.register_forward_hook(lambda m, i, o: feats.append(o.flatten(1).detach().numpy()))
    model.eval()
    t = time.perf_counter()
    with torch.no_grad():
        for _, r in table.iterrows():
            img = Image.open(r["abspath"]).convert("RGB").crop((r.x0, r.y0, r.x1, r.y1))
            model(tf(img)[None])
    hook.remove()
    return len(table) / (time.perf_counter() - t)


def bare(model, n, precision, batch=8, jit=False, compile_=False):
    "Forward passes alone, on ready-made tensors."
    x = torch.randn(batch, 3, 224, 224).contiguous(memory_format=torch.channels_last)
    model = model.to(memory_format=torch.channels_last).eval()
    dtype = dict(bf16=torch.bfloat16, fp16=torch.float16).get(precision)
    ctx = (lambda: torch.autocast("cpu", dtype=dtype)) if dtype else contextlib.nullcontext
    with torch.inference_mode(), ctx():
        t = time.perf_counter()
        if jit:
            model = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(model, x)))
        if compile_:
            import torch._inductor.config as inductor_config
            inductor_config.freezing = True                   # constant weights: oneDNN prepacking and fusion
            model = torch.compile(model)
        model(x)
        model(x)  # warm-up (and compilation)
        if jit or compile_:
            print(f"  (compilation and warm-up: {time.perf_counter() - t:.1f} s)")
        reps = max(1, n // batch)
        t = time.perf_counter()
        for _ in range(reps):
            model(x)
    return reps * batch / (time.perf_counter() - t)


def peak_rss_gb():
    """High-water mark of this process's resident memory. VmHWM, not ru_maxrss: Linux carries ru_maxrss over
    from the forking parent across exec, so a child started by a big parent would report the parent's size."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e9  # kB (KiB) -> GB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def child_rss(n_images):
    with tempfile.TemporaryDirectory() as d:
        c, table = cohort_with(n_images, Path(d) / "c")
        t = time.perf_counter()
        f = extract_features(table, BACKBONE, "random", cache=False, show_progress=False)
        print(
            json.dumps(
                dict(
                    n=len(f),
                    seconds=time.perf_counter() - t,
                    peak_rss_gb=peak_rss_gb(),
                    children_peak_rss_gb=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 / 1e9,
                )
            )
        )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=160)
    ap.add_argument("--rss", type=int, nargs="*", default=[100, 1000])
    ap.add_argument(
        "--batch", type=int, default=8, help="batch size of pe_renal and of the bare model (8: the CPU default)"
    )
    ap.add_argument("--precisions", action="store_true", help="also time the bare model in fp32, bf16 and fp16")
    ap.add_argument("--try-jit", action="store_true", help="also time a TorchScript-frozen (oneDNN-fused) model")
    ap.add_argument("--try-compile", action="store_true", help="also time torch.compile (slow to compile)")
    ap.add_argument("--agree", type=int, default=16, help="images on which bf16 and fp32 features are compared "
                    "(bf16 is slow where the CPU has no bf16 kernels)")
    ap.add_argument("--child-rss", type=int, default=0, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child_rss:
        return child_rss(a.child_rss)

    with tempfile.TemporaryDirectory() as d:
        c, table = cohort_with(a.images, Path(d) / "c")
        bb = load_backbone(BACKBONE, "random")
        t = time.perf_counter()
        choice = precision_choice("auto", torch.device("cpu"), bb)   # as extract_features decides it
        prec = choice["precision"]
        print(
            f"torch {torch.__version__}, {torch.get_num_threads()} threads, native bf16 kernels (AMX or AVX512-BF16): "
            f"{cpu_bf16_kernels()}, backbone {BACKBONE} (random weights: speed and memory do not depend on "
                "the weights)\n"
            f"auto precision: {prec} ({choice['reason']}; decided in {time.perf_counter() - t:.1f} s)"
        )
        import torchvision
        full = torchvision.models.resnet152(weights=None)
        r_naive = naive(table.iloc[: max(16, a.images // 4)], full)
        folded = fold_batchnorm(bb.model)
        r_bare = bare(folded, a.images, prec, batch=a.batch)
        r_unfolded = bare(bb.model, max(2 * a.batch, a.images // 4), prec, batch=a.batch)   # a rate: fewer images do
        t = time.perf_counter()
        extract_features(table, bb, cache=Path(d) / "cache", batch_size=a.batch, show_progress=False)
        t_cold = time.perf_counter() - t
        r_ours = len(table) / t_cold
        t = time.perf_counter()
        f_warm = extract_features(table, bb, cache=Path(d) / "cache", show_progress=False)
        t_warm = time.perf_counter() - t
        assert f_warm.attrs["pe_renal"]["n_cached"] == len(table)
        print(f"\nthroughput on {len(table)} images (img/s)")
        print(f"  naive (batch 1, fp32, hook)     {r_naive:7.1f}")
        print(
            f"  bare model, {prec}, batch {a.batch:<3}    {r_bare:7.1f}   (unfolded: {r_unfolded:.1f}, "
                f"{r_bare / r_unfolded:.2f}x)"
        )
        print(
            f"  pe_renal extract_features       {r_ours:7.1f}   (cold, includes decoding, ROI, transform, cache write)"
        )
        print(f"  pe_renal / bare  = {r_ours / r_bare:.2f}   (aim >= 0.85)")
        print(f"  pe_renal / naive = {r_ours / r_naive:.2f}   (aim >= 2.0)")
        if a.precisions:
            for p in ("fp32", "bf16", "fp16"):
                r = (
                    r_bare if p == prec else bare(folded, a.images, p, batch=a.batch)
                )  # the auto precision is timed above
                print(f"  bare model, {p}, batch {a.batch:<3}    {r:7.1f}   ({r / r_naive:.2f}x naive)")
        if a.try_jit:
            r_jit = bare(folded, a.images, prec, batch=a.batch, jit=True)
            print(f"  bare, TorchScript frozen ({prec})  {r_jit:7.1f}   ({r_jit / r_bare:.2f}x eager)")
        if a.try_compile:
            r_comp = bare(folded, a.images, prec, batch=a.batch, compile_=True)
            print(f"  bare, torch.compile ({prec})      {r_comp:7.1f}   ({r_comp / r_bare:.2f}x eager)")
        print(f"\ncache: cold {t_cold:.1f} s, warm {t_warm:.3f} s -> {t_cold / t_warm:.0f}x faster (aim >= 50)")
        f32 = extract_features(table.iloc[:a.agree], bb, precision="fp32", cache=False, show_progress=False).to_numpy()
        b16 = extract_features(table.iloc[:a.agree], bb, precision="bf16", cache=False, show_progress=False).to_numpy()
        cos = (f32 * b16).sum(1) / np.linalg.norm(f32, axis=1) / np.linalg.norm(b16, axis=1)
        print(
            f"bf16 vs fp32 cosine similarity per image ({len(cos)} images): min {cos.min():.5f}, mean "
                f"{cos.mean():.5f} (aim >= 0.999)"
        )
    for n in a.rss:
        out = subprocess.run(
            [sys.executable, __file__, "--child-rss", str(n)], capture_output=True, text=True, check=True
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"peak RSS extracting {r['n']:>5} images: {r['peak_rss_gb']:.2f} GB main process "
            f"(decoding workers: {r['children_peak_rss_gb']:.2f} GB each at most, most of it pages shared "
                "with the main "
            f"process by fork), {r['n'] / r['seconds']:.1f} img/s"
        )


if __name__ == "__main__":
    main()
