"""How optimistic is internal validation when the backbone is fine-tuned once on all training patients? A known answer.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_finetune_optimism.py [--seeds 0 1 2 3] [--n 70] [--fresh 200]
        [--size 64] [--mode last] [--epochs 12] [--out benchmarks/results/finetune_optimism.csv]

A study run with `--finetune` fine-tunes the backbone once on all training patients, extracts features with it, and
cross-validates LASSO -> KNN on those features (`internal_validation`): the patients of each validation fold were
seen by
the network that made their features. For each seed, on a synthetic cohort (`make_cohort(n, seed, delta=3,
image_effect, lab_effect=0, annotation_rate=0)`, the study's 7:3 split, seed 42), this measures the DL model's AUC:

- `once_cv`: what the study reports: fine-tuned once on the training patients, then `internal_validation` (5-fold x 4,
  seed 42) of the study's DL model (LASSO rule "min" -> KNN) on their features;
- `once_3f`: the same features, cross-validated on 3 folds x 1 (the folds of the refit below);
- `refit_3f`: the honest reference, what `--finetune-cv refit` reports: on the same 3 folds, the backbone fine-tuned
  again on each fold's training part only, and the fold's held-out patients scored from that network's features (the
  study's own code: `internal_validation(refit=finetune_refit(...))`);
- `fresh`: the truth: the study's DL model (fine-tuned once, LASSO -> KNN fitted on all training patients) applied to a
  fresh cohort of `--fresh` women from the same generator (one cohort, seed 1000 + the first seed, scored by every
  seed's model: no patient in common with any of them);
- `test`: the study's held-out test AUC (30% of the cohort), for comparison.

Optimism = once_cv - fresh (and once_3f - refit_3f, same folds). With `--null`, the same under the null (`effect=0`):
every true AUC is 0.5. A fold or model in which LASSO keeps no feature is the prevalence stand-in (AUC 0.5), as in
`internal_validation`. Single-threaded; resnet18 from random weights (ImageNet weights cannot be downloaded offline).

The report and run.json of a fine-tuned run quote these rows (mean and range over the seeds) from the copies shipped
with the package: after a rerun, copy finetune_optimism.csv and finetune_optimism_null.csv to pe_renal/resources/
(tests/test_quoted_figures.py checks that the two agree).
"""
import argparse
import json
import os
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("PE_RENAL_QUIET", "1")
import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score

from pe_renal.data import load_cohort
from pe_renal.split import split_cohort
from pe_renal.features import FeatureTransform, aggregate_features, extract_features
from pe_renal.finetune_parts import STUDY_DEFAULTS
from pe_renal.finetune import finetune_backbone, finetuned_features
from pe_renal.models import make_model
from pe_renal.internal import fit_or_prevalence, internal_validation
from pe_renal.stages import finetune_settings
from pe_renal.stages_eval import finetune_refit
from pe_renal.study import StudyConfig
from pe_renal.synthetic import make_cohort

p = argparse.ArgumentParser()
p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
p.add_argument("--n", type=int, default=70)
p.add_argument("--fresh", type=int, default=200)
p.add_argument("--size", type=int, default=64)
p.add_argument("--mode", default="last")
p.add_argument("--epochs", type=int, default=STUDY_DEFAULTS["epochs"])
p.add_argument("--image-effect", type=float, default=0.5)
p.add_argument("--null", action="store_true")
p.add_argument("--refit-folds", type=int, default=3)
p.add_argument("--out", default=None)
a = p.parse_args()
torch.set_num_threads(1)
TF = FeatureTransform(size=a.size)
GEN = dict(
    effect=0.0 if a.null else 1.0, delta=3.0, image_effect=a.image_effect, lab_effect=0.0, annotation_rate=0.0, n_jobs=1
)
SEED = 42                                                         # the study's default seed (split, models, CV)
CFG = StudyConfig(backbone="resnet18", weights="random", finetune=a.mode, epochs=a.epochs, image_size=a.size, seed=SEED,
                  device="cpu", precision="fp32", cache=None)      # what `pe-renal run --finetune MODE` would do


def dl_model(cols):
    return {"DL": make_model("DL", deep=list(cols), seed=SEED, lasso={"rule": "min", "method": "lasso"})}


def features(cohort, res, images=None):
    "Per-patient features of the fine-tuned network (of the given images table's patients)."
    imgs = cohort.images if images is None else images
    f = finetuned_features(imgs, res, device="cpu", transform=TF, cache=False, show_progress=False)
    return aggregate_features(f, imgs)


def one_seed(seed, tmp, fresh):
    c = load_cohort(make_cohort(tmp/f"c{seed}", n=a.n, seed=seed, **GEN))
    s = split_cohort(c, seed=SEED)
    y = s.set_index("patient_id")["label"]
    tr, te = s.loc[s.split == "train", "patient_id"].tolist(), s.loc[s.split == "test", "patient_id"].tolist()
    res = finetune_backbone(c, tr, CFG.backbone, CFG.weights, **finetune_settings(CFG), show_progress=False)
    f = features(c, res)
    X, ytr = f.loc[tr], y[tr].to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cv = dict(n_boot=0, seed=SEED, n_jobs=1)
        iv = internal_validation(dl_model(f.columns), X, ytr, n_splits=5, n_repeats=4, **cv)
        once_cv = float(
            iv.summary.loc[iv.summary.key == "cv", "auc"].iloc[0]
        )  # NaN: no DL model on all training patients
        once = internal_validation(dl_model(f.columns), X, ytr, n_splits=a.refit_folds, n_repeats=1, **cv).cv.folds
        refit = internal_validation(dl_model(f.columns), X, ytr, n_splits=a.refit_folds, n_repeats=1, **cv,
                                    refit=finetune_refit(c, X, list(f.columns), CFG, verbose=False)).cv.folds
        m, stand_in = fit_or_prevalence(dl_model(f.columns)["DL"], X, ytr)     # the study's DL model
        ff = aggregate_features(extract_features(fresh, res.backbone, device="cpu", transform=TF, cache=False,
                                                 show_progress=False), fresh)
        yf = fresh.clinical.set_index("patient_id").loc[ff.index, "label"].to_numpy()
        auc = lambda yy, XX: float(roc_auc_score(yy, m.predict_proba(XX)[:, 1]))
        row = dict(
            seed=seed,
            n_train=len(tr),
            once_cv=once_cv,
            once_3f=float(once["auc"].mean()),
            refit_3f=float(refit["auc"].mean()),
            fresh=auc(yf, ff),
            test=auc(y[te].to_numpy(), f.loc[te]),
            dl_model=not stand_in,
            deep_kept=np.nan
            if stand_in
            else len(m.named_steps["features"].named_transformers_["deep"].named_steps["lasso"].selected_),
            no_feat_once=int(once["no_features"].sum()),
            no_feat_refit=int(refit["no_features"].sum()),
            inner_val_auc_last=float(res.history["val_auc"].iloc[-1]) if "val_auc" in res.history else np.nan,
        )
    row.update(optimism_vs_fresh=row["once_cv"] - row["fresh"], optimism_vs_refit=row["once_3f"] - row["refit_3f"])
    return row


t0 = time.perf_counter()
load0 = os.getloadavg()
with tempfile.TemporaryDirectory() as tmp:
    tmp = Path(tmp)
    fresh = load_cohort(make_cohort(tmp/"fresh", n=a.fresh, seed=1000 + a.seeds[0], **GEN))
    rows = []
    for seed in a.seeds:
        t = time.perf_counter()
        r = one_seed(seed, tmp, fresh)
        r["seconds"] = round(time.perf_counter() - t, 1)
        rows.append(r)
        print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()}), flush=True)
df = pd.DataFrame(rows)
cols = ["once_cv", "once_3f", "refit_3f", "fresh", "test", "optimism_vs_fresh", "optimism_vs_refit"]
mean, sd = df[cols].mean(), df[cols].std(ddof=1)
print("mean", json.dumps(mean.round(3).to_dict()))
print("sd", json.dumps(sd.round(3).to_dict()))
print(
    json.dumps(
        dict(
            null=a.null,
            n=a.n,
            fresh=a.fresh,
            size=a.size,
            mode=a.mode,
            epochs=a.epochs,
            image_effect=a.image_effect,
            seconds=round(time.perf_counter() - t0, 1),
            load_start=[round(x, 2) for x in load0],
            load_end=[round(x, 2) for x in os.getloadavg()],
        )
    )
)
if a.out:
    df.to_csv(a.out, index=False)
