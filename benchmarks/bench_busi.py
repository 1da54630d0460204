"""Real ultrasound: the image-only arm of the study on BUSI (647 breast ultrasound images, benign 0 / malignant 1).

    .venv/bin/python benchmarks/bench_busi.py ../shared/data/busi_breast_us [--out benchmarks/results/busi]

No public paired renal-ultrasound + preeclampsia data exist; BUSI stands in to show how the method behaves on real
B-mode images (varying sizes, burned-in text, calipers, near-duplicate frames, label noise). The data folder is
never modified: it is converted into the cohort contract in a temporary folder.

Compared in one run, on the same folds (5-fold, stratified):
  - ResNet152 deep features -> LASSO -> KNN (the paper's pipeline)
  - the same deep features -> LASSO -> logistic regression
  - a non-deep baseline: first-order intensity + GLCM texture statistics -> LASSO -> KNN
each with GROUPED folds (near-duplicate images never on both sides; `near_duplicate_groups.csv`) and with NAIVE
image-level folds: the difference measures the leakage that inflates published figures.
AUC of the pooled out-of-fold predictions with its DeLong 95% CI, the mean of the fold AUCs, time and peak memory.

With `--finetune last|full|head`, fine-tuned rows on the grouped folds: in each fold a backbone (`--ft-backbone`,
default resnet18, at `--ft-size` pixels) is fine-tuned on that fold's training images only, with the study's settings
(`pe_renal.stages.finetune_settings`), and the fold's held-out images are scored (a) by LASSO -> KNN on that network's
pooled features, as `pe-renal run --finetune MODE --finetune-cv refit` validates, and (b) by the fine-tuned head's own
logit; beside them the same backbone frozen, on the same folds, for comparison:

    .venv/bin/python benchmarks/bench_busi.py ../shared/data/busi_breast_us --finetune last [--ft-backbone resnet18
    --ft-size 128]
"""
import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("PE_RENAL_QUIET", "1")
import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from pe_renal.data import load_cohort
from pe_renal.images import read_image
from pe_renal.evaluation import delong_ci, delong_test
from pe_renal.features import extract_features
from pe_renal.backbones import load_backbone
from pe_renal.models import make_model
from pe_renal.stages import finetune_settings
from pe_renal.study import StudyConfig

CONFLICTS = ["busi_benign_042", "busi_benign_131", "busi_malignant_051", "busi_benign_399", "busi_malignant_093",
             "busi_benign_433", "busi_malignant_145"]


def to_cohort(src: Path, dst: Path, drop_conflicts: bool = True):
    "Copy BUSI into the cohort contract (clinical.csv with label only, images.csv, images/). The source is only read."
    lab = pd.read_csv(src / "labels.csv")
    grp = pd.read_csv(src / "near_duplicate_groups.csv")
    df = lab.merge(grp, on="patient_id", how="left")
    if drop_conflicts:
        df = df[~df["patient_id"].isin(CONFLICTS)]
    (dst / "images").mkdir(parents=True)
    for p in df["image_path"]:
        shutil.copy2(src / p, dst / "images" / Path(p).name)
    df[["patient_id", "label"]].to_csv(dst / "clinical.csv", index=False)
    pd.DataFrame({"patient_id": df["patient_id"], "path": ["images/" + Path(p).name for p in df["image_path"]]}).to_csv(
        dst / "images.csv", index=False
    )
    groups = df["dup_group"].fillna(df["patient_id"]).to_numpy()
    return df["patient_id"].to_numpy(), df["label"].to_numpy().astype(int), groups


def texture_features(paths, levels: int = 32) -> pd.DataFrame:
    "First-order intensity statistics and GLCM texture (distances 1, 2, 4; four angles, averaged) per image."
    rows = []
    for p in paths:
        img = read_image(p)
        x = img[img > 0.02] if (img > 0.02).mean() > 0.2 else img.ravel()
        hist = np.histogram(x, 64, (0, 1))[0] / x.size
        f = {
            "mean": x.mean(),
            "sd": x.std(),
            "skew": ((x - x.mean()) ** 3).mean() / (x.std() ** 3 + 1e-9),
            "kurtosis": ((x - x.mean()) ** 4).mean() / (x.std() ** 4 + 1e-9),
            "entropy": -(hist[hist > 0] * np.log2(hist[hist > 0])).sum(),
            **{f"p{q}": np.percentile(x, q) for q in (5, 25, 50, 75, 95)},
        }
        q = np.minimum((img * levels).astype(int), levels - 1)
        for d in (1, 2, 4):
            acc = {k: [] for k in ("contrast", "homogeneity", "energy", "correlation", "dissimilarity")}
            for dy, dx in ((0, d), (d, d), (d, 0), (d, -d)):
                H, W = q.shape                     # pixel pairs (r, c) and (r + dy, c + dx), dy >= 0
                a = q[0:H - dy, max(0, -dx):W - max(0, dx)]
                b = q[dy:H, max(0, dx):W - max(0, -dx)]
                P = (
                    np.bincount((a * levels + b).ravel(), minlength=levels * levels)
                    .reshape(levels, levels)
                    .astype(float)
                )
                P = P + P.T
                P /= P.sum()
                i, j = np.indices(P.shape)
                mi, mj = (i * P).sum(), (j * P).sum()
                si, sj = np.sqrt(((i - mi) ** 2 * P).sum()), np.sqrt(((j - mj) ** 2 * P).sum())
                acc["contrast"].append(((i - j) ** 2 * P).sum())
                acc["dissimilarity"].append((np.abs(i - j) * P).sum())
                acc["homogeneity"].append((P / (1 + (i - j) ** 2)).sum())
                acc["energy"].append(np.sqrt((P**2).sum()))
                acc["correlation"].append(((i - mi) * (j - mj) * P).sum() / (si * sj + 1e-12))
            f.update({f"glcm_{k}_d{d}": float(np.mean(v)) for k, v in acc.items()})
        rows.append(f)
    return pd.DataFrame(rows).astype(float)


def markdown(df: pd.DataFrame) -> str:
    cells = [list(map(str, df.columns))] + [[str(v) for v in r] for r in df.itertuples(index=False)]
    return "\n".join(
        ["| " + " | ".join(cells[0]) + " |", "|" + " --- |" * len(df.columns)]
        + ["| " + " | ".join(r) + " |" for r in cells[1:]]
    )


def cv_predictions(model, X: pd.DataFrame, y, folds):
    "Pooled out-of-fold P(malignant) and per-fold AUCs; the whole pipeline (LASSO included) refitted per fold."
    oof, aucs = np.zeros(len(y)), []
    for tr, te in folds:
        m = clone(model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m.fit(X.iloc[tr], y[tr])
        oof[te] = m.predict_proba(X.iloc[te])[:, 1]
        aucs.append(roc_auc_score(y[te], oof[te]))
    return oof, np.array(aucs)


def finetuned_cv(cohort, ids, y, folds, backbone, weights, mode, size, epochs, seed):
    """Out-of-fold scores with the backbone fine-tuned inside each fold: LASSO -> KNN on its features, and its head's
    logit."""
    import torch
    from pe_renal.finetune import finetune_backbone, finetuned_features
    cfg = StudyConfig(backbone=backbone, weights=weights, finetune=mode, epochs=epochs, image_size=size, seed=seed,
                      device="cpu", fallback=weights == "imagenet")
    kw = finetune_settings(cfg)
    oof_knn, oof_head, aucs_knn, aucs_head, notes = np.zeros(len(y)), np.zeros(len(y)), [], [], []
    t0 = time.perf_counter()
    for k, (tr, te) in enumerate(folds):
        t = time.perf_counter()
        res = finetune_backbone(cohort, list(ids[tr]), backbone, weights, **kw, show_progress=False)
        f = finetuned_features(cohort, res, device="cpu", transform=kw["transform"], cache=False, show_progress=False)
        X = pd.DataFrame(f.to_numpy(), index=ids, columns=f.columns)
        with torch.inference_mode():
            logit = res.head(torch.tensor(X.to_numpy(np.float32))).numpy()
        m = make_model("DL", deep=list(X.columns), seed=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m.fit(X.iloc[tr], y[tr])
        oof_knn[te] = m.predict_proba(X.iloc[te])[:, 1]
        oof_head[te] = logit[te]
        aucs_knn.append(roc_auc_score(y[te], oof_knn[te]))
        aucs_head.append(roc_auc_score(y[te], oof_head[te]))
        notes.append(res.info["note"])
        print(f"  fold {k + 1}: fine-tuned ({mode}) on {len(tr)} images, {time.perf_counter() - t:.0f} s; held-out AUC "
              f"LASSO -> KNN {aucs_knn[-1]:.3f}, head {aucs_head[-1]:.3f}", flush=True)
    return (oof_knn, np.array(aucs_knn)), (oof_head, np.array(aucs_head)), time.perf_counter() - t0, notes[0]


def frozen_cv(cohort, ids, y, folds, backbone, weights, size, seed):
    "The same backbone, not fine-tuned, at the same input size: LASSO -> KNN on the same folds."
    from pe_renal.features import FeatureTransform
    t = time.perf_counter()
    bb = load_backbone(backbone, weights, seed=seed, fallback=weights == "imagenet")
    f = extract_features(
        cohort, bb, device="cpu", transform=FeatureTransform(size=size), cache=False, show_progress=False
    )
    X = pd.DataFrame(f.to_numpy(), index=ids, columns=f.columns)
    oof, aucs = cv_predictions(make_model("DL", deep=list(X.columns), seed=seed), X, y, folds)
    return (oof, aucs), time.perf_counter() - t, bb.note


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data", type=Path, help="the busi_breast_us folder")
    ap.add_argument("--out", type=Path, default=None, help="folder for the results table (CSV + Markdown)")
    ap.add_argument("--backbone", default="resnet152")
    ap.add_argument(
        "--weights",
        default="imagenet",
        help="imagenet (falls back to untrained offline, and says so), random, or a file",
    )
    ap.add_argument(
        "--keep-conflicts", action="store_true", help="keep the 7 images whose near-duplicates carry the other label"
    )
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--finetune", default="none", choices=["none", "head", "last", "full"],
                    help="add rows with the backbone fine-tuned inside each grouped fold")
    ap.add_argument("--ft-backbone", default="resnet18", help="backbone of the fine-tuned rows (default resnet18)")
    ap.add_argument("--ft-size", type=int, default=128, help="input size of the fine-tuned rows (default 128)")
    ap.add_argument("--ft-epochs", type=int, default=None, help="fine-tuning epochs (default: the study's)")
    a = ap.parse_args()
    if not (a.data / "labels.csv").is_file():
        sys.exit(f"{a.data}: not the BUSI folder (labels.csv missing)")
    with tempfile.TemporaryDirectory() as d:
        ids, y, groups = to_cohort(a.data, Path(d) / "cohort", drop_conflicts=not a.keep_conflicts)
        cohort = load_cohort(Path(d) / "cohort")
        print(f"BUSI as a cohort: {cohort.n_images} images, {y.sum()} malignant / {(y == 0).sum()} benign, "
              f"{len(set(groups))} groups after near-duplicate grouping"
              f"{'' if a.keep_conflicts else '; 7 images with conflicting near-duplicate labels dropped'}")
        t = time.perf_counter()
        bb = load_backbone(a.backbone, a.weights, fallback=a.weights == "imagenet")
        deep = extract_features(cohort, bb, show_progress=False)
        t_deep = time.perf_counter() - t
        print(
            f"deep features: {bb.note} ({deep.shape[1]} per image, {t_deep:.0f} s, "
                f"{deep.attrs['pe_renal']['n_cached']} from cache)"
        )
        t = time.perf_counter()
        tex = texture_features(cohort.images["abspath"])
        t_tex = time.perf_counter() - t
        deep.index = tex.index = ids
        schemes = {
            "grouped": list(StratifiedGroupKFold(a.folds, shuffle=True, random_state=a.seed).split(ids, y, groups)),
            "naive": list(StratifiedKFold(a.folds, shuffle=True, random_state=a.seed).split(ids, y)),
        }
        leaks = {k: sum(len(set(groups[tr]) & set(groups[te])) > 0 for tr, te in f) for k, f in schemes.items()}
        methods = {
            f"{a.backbone} -> LASSO -> KNN": (make_model("DL", deep=list(deep.columns), seed=a.seed), deep, t_deep),
            f"{a.backbone} -> LASSO -> logistic": (
                make_model("DL", deep=list(deep.columns), classifier="logistic", seed=a.seed),
                deep,
                t_deep,
            ),
            "first-order + GLCM -> LASSO -> KNN": (make_model("DL", deep=list(tex.columns), seed=a.seed), tex, t_tex),
        }
        rows, oofs, paired = [], {}, []
        for name, (model, X, t_feat) in methods.items():
            for scheme, folds in schemes.items():
                r0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                t = time.perf_counter()
                oof, aucs = cv_predictions(model, X, y, folds)
                oofs[(name, scheme)] = oof
                ci = delong_ci(y, oof)
                rows.append(
                    {
                        "method": name,
                        "folds": scheme,
                        "AUC (pooled OOF)": ci.auc,
                        "DeLong 95% CI": f"{ci.lo:.3f}-{ci.hi:.3f}",
                        "mean fold AUC": aucs.mean(),
                        "SD fold AUC": aucs.std(ddof=1),
                        "features s": t_feat,
                        "CV s": time.perf_counter() - t,
                        "peak RSS GB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9,
                    }
                )
        if a.finetune != "none":
            g = schemes["grouped"]
            tag = f"{a.ft_backbone} {a.ft_size} px"
            r0 = time.perf_counter()
            (oof, aucs), secs, note = frozen_cv(cohort, ids, y, g, a.ft_backbone, a.weights, a.ft_size, a.seed)
            extra = [(f"{tag}, frozen -> LASSO -> KNN", oof, aucs, secs, note)]
            knn, head, secs, note = finetuned_cv(cohort, ids, y, g, a.ft_backbone, a.weights, a.finetune, a.ft_size,
                                                 a.ft_epochs, a.seed)
            extra += [(f"{tag}, fine-tuned ({a.finetune}) in each fold -> LASSO -> KNN", *knn, secs, note),
                      (f"{tag}, fine-tuned ({a.finetune}) in each fold: its head's logit", *head, secs, note)]
            for name, oof, aucs, secs, note in extra:
                oofs[(name, "grouped")] = oof
                ci = delong_ci(y, oof)
                rows.append(
                    {
                        "method": name,
                        "folds": "grouped",
                        "AUC (pooled OOF)": ci.auc,
                        "DeLong 95% CI": f"{ci.lo:.3f}-{ci.hi:.3f}",
                        "mean fold AUC": aucs.mean(),
                        "SD fold AUC": aucs.std(ddof=1),
                        "features s": secs,
                        "CV s": np.nan,
                        "peak RSS GB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9,
                    }
                )
            print(f"fine-tuned rows: {note} (first fold); {time.perf_counter() - r0:.0f} s in all")
            ft_name = extra[1][0]                    # paired DeLong on the same images (pooled out-of-fold scores)
            for other in ("first-order + GLCM -> LASSO -> KNN", extra[0][0], f"{a.backbone} -> LASSO -> KNN"):
                d = delong_test(y, oofs[(ft_name, "grouped")], oofs[(other, "grouped")])
                paired.append({"a": ft_name, "b": other, "AUC a": d.auc_a, "AUC b": d.auc_b, "z": d.z, "p": d.p})
        res = pd.DataFrame(rows)
        wide = res.pivot(index="method", columns="folds", values="AUC (pooled OOF)")
        wide["inflation (naive - grouped)"] = wide["naive"] - wide["grouped"]
        pd.set_option("display.width", 200)
        print(res.round(3).to_string(index=False))
        print("\nleakage: folds whose test images have a near-duplicate in training:", leaks)
        print(wide.round(3).to_string())
        if paired:
            print("\npaired DeLong, grouped folds:\n" + pd.DataFrame(paired).round(4).to_string(index=False))
        print(
            f"\nweights: {bb.weights}. "
            + (
                "An UNTRAINED backbone: its features are fixed random filters, not ImageNet features; "
                "the deep AUCs here are a floor for what the paper's pipeline can do on these images."
                if bb.untrained
                else ""
            )
        )
        if a.out:
            a.out.mkdir(parents=True, exist_ok=True)
            res.to_csv(a.out / "busi_results.csv", index=False)
            (a.out / "busi_results.md").write_text(
                f"# BUSI benchmark\n\nCommand: `python benchmarks/bench_busi.py {a.data} --out {a.out}"
                + (
                    f" --finetune {a.finetune} --ft-backbone {a.ft_backbone} --ft-size {a.ft_size}"
                    if a.finetune != "none"
                    else ""
                )
                + "`\n\n"
                f"{cohort.n_images} images; weights {bb.weights}{' (UNTRAINED)' if bb.untrained else ''}, "
                f"{deep.attrs['pe_renal']['precision']} ({deep.attrs['pe_renal']['n_cached']} of them from "
                "the feature cache); "
                f"{a.folds}-fold CV, seed {a.seed}.\n\n"
                + markdown(res.round(3))
                + "\n\n"
                + markdown(wide.round(3).reset_index())
                + "\n"
                + (
                    (
                        "\nPaired DeLong tests on the grouped folds' pooled out-of-fold scores (the same "
                        "640 images; each "
                        "fold's model scores its own held-out images, so the pairing is approximate):\n\n"
                        + markdown(pd.DataFrame(paired).round(4))
                        + "\n"
                    )
                    if paired
                    else ""
                )
            )


if __name__ == "__main__":
    main()
