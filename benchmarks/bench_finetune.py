"""Fine-tuning cost on CPU: what `--finetune last` adds to a study run on the demo cohort, measured.

    .venv/bin/python benchmarks/bench_finetune.py COHORT [--backbone resnet152] [--mode last] [--views 4] [--threads 2]

COHORT is a cohort folder (the demo cohort: `pe-renal synth --out COHORT`). The training patients are those of the
study's 7:3 split (seed 42). Prints, in this run: the frozen-feature extraction of every image (what a run without
fine-tuning costs), the fine-tuning (frozen-trunk pass over the views, then the epochs), and the extraction with the
fine-tuned network, with the ratio fine-tuning / frozen extraction. Starting weights are random (ImageNet weights
cannot be downloaded offline); the arithmetic, and so the time, is the same with ImageNet weights.
"""
import argparse, json, os, time

os.environ.setdefault("PE_RENAL_QUIET", "1")
import torch

from pe_renal.data import load_cohort, split_cohort
from pe_renal.features import extract_features, load_backbone
from pe_renal.finetune import finetune_backbone

p = argparse.ArgumentParser()
p.add_argument("cohort"); p.add_argument("--backbone", default="resnet152"); p.add_argument("--mode", default="last")
p.add_argument("--views", type=int, default=4); p.add_argument("--threads", type=int, default=2)
p.add_argument("--epochs", type=int, default=None)
a = p.parse_args()
torch.set_num_threads(a.threads)
c = load_cohort(a.cohort, check_images=False); s = split_cohort(c, seed=42)
train = s.loc[s.split == "train", "patient_id"].tolist()
bb = load_backbone(a.backbone, "random")
t = time.perf_counter(); extract_features(c, bb, cache=False, show_progress=False); t_frozen = time.perf_counter() - t
t = time.perf_counter()
res = finetune_backbone(c, train, bb, mode=a.mode, views=a.views, epochs=a.epochs, seed=0, show_progress=False)
t_ft = time.perf_counter() - t
t = time.perf_counter(); extract_features(c, res.backbone, cache=False, show_progress=False); t_tuned = time.perf_counter() - t
out = dict(backbone=a.backbone, mode=a.mode, views=a.views, threads=a.threads, cpu_count=os.cpu_count(),
           patients=c.n_patients, images=c.n_images, train_patients=len(train),
           frozen_extraction_s=round(t_frozen, 1), finetune_s=round(t_ft, 1),
           trunk_s=res.info["trunk_seconds"], epoch_s=round(float(res.history["seconds"].sum()), 1), epochs_run=len(res.history), best_epoch=res.best_epoch,
           tuned_extraction_s=round(t_tuned, 1), added_s=round(t_ft, 1), best_val_auc=res.info["best_val_auc"])
print(json.dumps(out, indent=2))
