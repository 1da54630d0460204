"""The kidney ratio a perfect Grad-CAM map can reach on each ResNet grid, on a synthetic cohort's test images.

    .venv/bin/python benchmarks/gradcam_reach.py COHORT    # e.g. a folder from make_cohort(n=200, seed=7,
    delta=2.5, image_effect=3.0)

For every test image (split_cohort seed 42) and each stage's grid at 224 px (layer4, layer3, layer2), the kidney ratio
(`pe_renal.gradcam.localisation`) of a map that marks exactly the whole kidney, or exactly its cortex, evenly and
nothing else, seen at that grid's resolution (`uniform_map_ratio`). Prints mean, min and max per stage. The grid
size depends only on the architecture, so a random ResNet18 gives it.
"""
import sys
import numpy as np
import pandas as pd
from pathlib import Path
from pe_renal.data import load_cohort
from pe_renal.split import split_cohort
from pe_renal.images import apply_roi, read_image
from pe_renal.features import FeatureTransform, roi_of
from pe_renal.backbones import load_backbone
from pe_renal.gradcam import DeepSignature, map_grid, uniform_map_ratio
c = load_cohort(sys.argv[1])
s = split_cohort(c, seed=42)
te = set(s.loc[s.split == "test", "patient_id"])
sig = DeepSignature(load_backbone("resnet18", "random").model, [0], [0.0], [1.0], [1.0], 0.0)
tf, rows = FeatureTransform(size=224), []
for i in np.flatnonzero(c.images["patient_id"].isin(te)):
    r = c.images.iloc[i]
    box, _ = roi_of(r)
    kidney, cortex = (apply_roi(read_image(Path(c.root) / r[k]), box=box) > 0.5 for k in ("kidney_mask", "cortex_mask"))
    for stage in ("layer4", "layer3", "layer2"):
        g = map_grid(sig, stage, 224)
        for name, region in (("whole kidney", kidney), ("cortex", cortex)):
            rows.append(dict(stage=f"{stage} {g}", marks=name, ratio=uniform_map_ratio(kidney, g, tf, marked=region)))
d = pd.DataFrame(rows)
print(len(d) // 6, "test images")
print(d.groupby(["stage", "marks"], sort=False)["ratio"].agg(["mean", "min", "max"]).round(2).unstack().to_string())
