"""A fine-tuned `once` run on a no-signal cohort: which out-of-fold scores choose the DL and Composite thresholds,
and how
optimistic the ones left out are (their pooled AUC, where the truth is 0.5).

    OMP_NUM_THREADS=1 python benchmarks/threshold_once_null.py [SEED] [FOLDER]     # about 4 minutes on 2 cores
"""
import json
import sys
from pathlib import Path
import pandas as pd
from pe_renal.study import StudyConfig, run_study
from pe_renal.synthetic import make_cohort
from pe_renal.evaluation import roc_auc
seed = int(sys.argv[1]) if len(sys.argv) > 1 else 201
d = Path(sys.argv[2] if len(sys.argv) > 2 else "threshold_once_null")
d.mkdir(parents=True)              # a new folder: an existing one is refused, never emptied
c = make_cohort(d / "cohort", n=80, seed=seed, effect=0)
cfg = StudyConfig(
    backbone="resnet18",
    weights="random",
    device="cpu",
    cv_splits=5,
    cv_repeats=2,
    n_boot=0,
    n_boot_ci=200,
    stability_boot=0,
    shap_background=5,
    dpi=60,
    image_size=96,
    finetune="last",
    epochs=4,
    cache=str(d / "cache"),
)
out = run_study(c, d / "results", cfg, verbose=False)
m = json.loads((out / "run.json").read_text())
print("RULE:", m["model"]["threshold_rule"])
print("THRESHOLDS:", m["model"]["thresholds"])
oof = pd.read_csv(out / "tables" / "threshold_oof_scores.csv")
for mod, g in oof.groupby("model"):
    u = g[g["chooses_threshold"]]
    print(
        mod,
        "pooled OOF AUC all",
        round(roc_auc(g["label"], g["score"]), 3),
        "n",
        g["patient_id"].nunique(),
        "| chosen on",
        u["patient_id"].nunique(),
        "patients, AUC",
        round(roc_auc(u["label"], u["score"]), 3) if u["label"].nunique() == 2 else None,
    )
print(pd.read_csv(out / "tables" / "performance_formatted.csv").to_string())
