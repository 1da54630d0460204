"""Fine-tuning cost on CPU: what `--finetune last` adds to a study run on the demo cohort, measured.

    .venv/bin/python benchmarks/bench_finetune.py COHORT [--backbone resnet152] [--mode last] [--views 4] [--threads 2]

COHORT is a cohort folder (the demo cohort: `pe-renal synth --out COHORT`). The training patients are those of the
study's 7:3 split (seed 42). Prints, in this run: the frozen-feature extraction of every image (what a run without
fine-tuning costs), the fine-tuning (frozen-trunk pass over the views, then the epochs), and the extraction with the
fine-tuned network. With --components, only the parts on 32 random images: frozen-trunk and full-network images/s,
training seconds per image of the last block, and the fine-tuning time they imply for the cohort. With --study, what a
study run spends in its fine-tuning and feature stages (`finetune_stage`, `features_stage`, as `run_study` calls
them, no
feature cache) with `--finetune none` and with `--finetune MODE` (the study's settings: 2 views, 12 epochs for last),
and the difference: what fine-tuning adds to a run. Starting weights are random (ImageNet weights
cannot be downloaded offline); the arithmetic, and so the time, is the same with ImageNet weights.

    .venv/bin/python benchmarks/bench_finetune.py COHORT --study [--compare] [--backbone resnet152] [--mode last]
    [--threads 2]

Measured with --study --compare on the demo cohort (279 women, 415 images), resnet152, 2 threads, Intel Xeon 2.8 GHz
without bf16 kernels, fp32: features stage alone (--finetune none) 61 s; --finetune last 145 s (fine-tuning 117 s, of
which frozen trunk 77 s and 12 epochs 32 s; features 28 s, 287 of 415 images from the kept trunk outputs, 110 MB):
+84 s. Extracting every image with the fine-tuned network instead (as before the reuse): +129 s; features identical
(largest difference 0). Load average 0.2-1.9 (mostly this run). Under a load of 3-3.6 from other work: +171 s.
"""
import argparse
import json
import os
import time

import numpy as np

os.environ.setdefault("PE_RENAL_QUIET", "1")
import torch

from pe_renal.data import load_cohort
from pe_renal.split import split_cohort
from pe_renal.features import extract_features
from pe_renal.backbones import load_backbone
from pe_renal.finetune import finetune_backbone

p = argparse.ArgumentParser()
p.add_argument("cohort")
p.add_argument("--backbone", default="resnet152")
p.add_argument("--mode", default="last")
p.add_argument("--views", type=int, default=4)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--epochs", type=int, default=None)
p.add_argument("--components", action="store_true")
p.add_argument("--study", action="store_true")
p.add_argument(
    "--compare",
    action="store_true",
    help="with --study: also time a plain extraction with the fine-tuned network "
    "(what the feature stage did before it reused the trunk) and compare its features",
)
a = p.parse_args()
torch.set_num_threads(a.threads)
if a.study:
    import tempfile
    from pathlib import Path
    from pe_renal.stages import features_stage, finetune_stage, split_stage
    from pe_renal.study import StudyConfig

    c = load_cohort(a.cohort, check_images=False)
    load = lambda: round(os.getloadavg()[0], 2)
    out = dict(
        backbone=a.backbone,
        mode=a.mode,
        threads=a.threads,
        cpu_count=os.cpu_count(),
        patients=c.n_patients,
        images=c.n_images,
    )
    for mode in ("none", a.mode):
        cfg = StudyConfig(
            backbone=a.backbone, weights="random", finetune=mode, epochs=a.epochs, device="cpu", cache=False
        )
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            (tmp / "tables").mkdir()
            (tmp / "figures").mkdir()
            split = split_stage(c, cfg, tmp).split
            l0 = load()
            t = time.perf_counter()
            ft = finetune_stage(c, split, cfg, tmp, verbose=False)
            t_ft = time.perf_counter() - t
            kept = ft.result.trunk.nbytes if ft.result is not None and ft.result.trunk is not None else 0
            t = time.perf_counter()
            f = features_stage(c, cfg, False, ft)
            t_f = time.perf_counter() - t
        out[mode] = dict(
            finetune_s=round(t_ft, 1),
            features_s=round(t_f, 1),
            total_s=round(t_ft + t_f, 1),
            load_before=l0,
            load_after=load(),
            n_trunk_reused=f.meta.get("n_trunk_reused", 0),
            kept_trunk_mb=round(kept / 2**20, 1),
            **(
                {}
                if ft.result is None
                else dict(
                    trunk_s=ft.result.info["trunk_seconds"],
                    epochs_run=ft.result.info["epochs_run"],
                    epoch_s=round(float(ft.result.history["seconds"].sum()), 1),
                )
            ),
        )
        if a.compare and ft.result is not None:
            from pe_renal.features import aggregate_features

            t = time.perf_counter()
            ref = extract_features(c, ft.result.backbone, device="cpu", cache=False, show_progress=False)
            out[mode].update(
                plain_features_s=round(time.perf_counter() - t, 1),
                total_plain_s=round(t_ft + time.perf_counter() - t, 1),
                max_abs_diff=float(np.abs(aggregate_features(ref, c).to_numpy() - f.deep.to_numpy()).max()),
                max_abs_feature=float(np.abs(f.deep.to_numpy()).max()),
            )
        print(json.dumps({mode: out[mode]}), flush=True)
    out["added_s"] = round(out[a.mode]["total_s"] - out["none"]["total_s"], 1)
    if a.compare:
        out["added_plain_s"] = round(out[a.mode]["total_plain_s"] - out["none"]["total_s"], 1)
    print(json.dumps(out, indent=2))
    raise SystemExit
c = load_cohort(a.cohort, check_images=False)
s = split_cohort(c, seed=42)
train = s.loc[s.split == "train", "patient_id"].tolist()
bb = load_backbone(a.backbone, "random")
if a.components:
    from pe_renal.features import fold_batchnorm
    from pe_renal.finetune_parts import DEFAULTS, LinearHead, split_network
    trunk, learn = split_network(bb.model, "last")
    x = torch.randn(32, 3, 224, 224).contiguous(memory_format=torch.channels_last)
    ft, fm = (fold_batchnorm(m).to(memory_format=torch.channels_last) for m in (trunk, bb.model))
    with torch.no_grad():
        ft(x[:8])
        t = time.perf_counter()
        acts = torch.cat([ft(b) for b in x.split(8)])
        trunk_rate = 32 / (time.perf_counter() - t)
        t = time.perf_counter()
        [fm(b) for b in x.split(8)]
        full_rate = 32 / (time.perf_counter() - t)
    head = LinearHead(torch.zeros(bb.dim), torch.ones(bb.dim))
    opt = torch.optim.AdamW(list(learn.parameters()) + list(head.parameters()), 1e-3)
    learn.train()
    y = torch.randint(0, 2, (32,), generator=torch.Generator().manual_seed(0)).float()
    t = time.perf_counter()
    for _ in range(2):
        for b, yb in zip(acts.split(16), y.split(16)):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(head(learn(b)), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
    step = (time.perf_counter() - t) / 64
    n_train = int(c.images.patient_id.isin(set(train)).sum())
    n_inner = round(0.8 * n_train)
    epochs = a.epochs or DEFAULTS["last"][0]
    trunk_s = (a.views * n_inner + (n_train - n_inner)) / trunk_rate
    train_s = epochs * n_inner * step
    print(
        json.dumps(
            dict(
                backbone=a.backbone,
                threads=a.threads,
                trunk_img_s=round(trunk_rate, 2),
                full_img_s=round(full_rate, 2),
                train_s_per_img=round(step, 4),
                train_images=n_train,
                views=a.views,
                epochs_at_most=epochs,
                implied_trunk_s=round(trunk_s),
                implied_training_s=round(train_s),
                implied_added_s=round(trunk_s + train_s),
                frozen_extraction_s=round(c.n_images / full_rate),
            ),
            indent=2,
        )
    )
    raise SystemExit
t = time.perf_counter()
extract_features(c, bb, cache=False, show_progress=False)
t_frozen = time.perf_counter() - t
t = time.perf_counter()
res = finetune_backbone(c, train, bb, mode=a.mode, views=a.views, epochs=a.epochs, seed=0, show_progress=False)
t_ft = time.perf_counter() - t
t = time.perf_counter()
extract_features(c, res.backbone, cache=False, show_progress=False)
t_tuned = time.perf_counter() - t
out = dict(
    backbone=a.backbone,
    mode=a.mode,
    views=a.views,
    threads=a.threads,
    cpu_count=os.cpu_count(),
    patients=c.n_patients,
    images=c.n_images,
    train_patients=len(train),
    frozen_extraction_s=round(t_frozen, 1),
    finetune_s=round(t_ft, 1),
    trunk_s=res.info["trunk_seconds"],
    epoch_s=round(float(res.history["seconds"].sum()), 1),
    epochs_run=len(res.history),
    best_epoch=res.best_epoch,
    tuned_extraction_s=round(t_tuned, 1),
    added_s=round(t_ft, 1),
    best_val_auc=res.info["best_val_auc"],
)
print(json.dumps(out, indent=2))
